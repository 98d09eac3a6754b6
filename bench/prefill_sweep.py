"""Labels-only throughput of the embedded runner per batched-prefill group size (PREFILL_TOKENS), and
with one ticket per prefill pass ("off"), on 64 golden tickets in one process:

    .venv/bin/python bench/prefill_sweep.py 512 1024 2048 4096 off
"""

import csv
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import server.engines.embedded.runner as rm  # noqa: E402
from server.config import load_settings  # noqa: E402
from server.engines import open_batch_runner  # noqa: E402
from server.prompts import TicketInput  # noqa: E402
from server.taxonomy import load_taxonomy  # noqa: E402

s = load_settings()
tax = load_taxonomy(s.taxonomy)
rows = list(csv.DictReader(open(ROOT / "data/tickets/golden.csv", newline="", encoding="utf-8")))
random.Random(0).shuffle(rows)
names = tuple(f.name for f in tax.label_fields)
tix = [TicketInput(subject=x["subject"], body=x["body"], fields=names) for x in rows[:68]]
r = open_batch_runner(s, tax)
r.run(tix[:4])
for variant in sys.argv[1:]:
    if variant == "off":
        r.settings = s.variant(engine={"batched_prefill": False})
    else:
        r.settings = s.variant(engine={"batched_prefill": True})
        rm.PREFILL_TOKENS = int(variant)
    t = time.perf_counter()
    r.run(tix[4:68])
    dt = time.perf_counter() - t
    print(variant, "64 labels-only:", round(dt, 2), "s", round(64 / dt, 3), "t/s", flush=True)
