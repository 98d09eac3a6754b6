"""A small stopword-based language guess for en/de/es/fr/pt, used only to pick an engine.

Each language has a list of very frequent function words. Words that appear in more than one list
(`de`, `que`, `a`, `en`, `la`, ...) say nothing about which language it is and are dropped, so every
remaining hit is evidence for exactly one language. The language with the most hits wins when it
has at least `min_hits` and beats the runner-up; otherwise the answer is "unknown". No dependencies,
microseconds per ticket; good enough to route (not to translate): a rule that needs certainty can
list "unknown" or not.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import islice
from typing import Final

from server.results import LANGUAGES, DetectedLanguage

UNKNOWN: Final = "unknown"

_STOPWORDS: dict[str, str] = {
    "en": """the and to of is it that for you was with on are this have be not my but at from or an
        they we can will your our has had been would there what which when please could i me do does
        did just any about after into than then them these those their how why hi hello thanks
        thank i'm don't can't it's""",
    "de": """der die das und ist nicht ich sie es ein eine einen dem den mit auf für von zu sich auch
        wir ihr mein meine meinen ihnen haben hat habe wird wurde werden kann können bitte noch nach
        bei aus wie aber oder wenn dass schon seit jetzt keine kein danke hallo sehr geehrte""",
    "es": """el los las y es del por para con una uno su sus al lo como pero más este esta estoy
        hola gracias mi mis tengo tiene han ha sido puedo pueden muy ya cuando porque sin sobre
        hasta desde nos usted ustedes favor también hay fue está están""",
    "fr": """le les et est un une des du dans pour pas que qui sur avec ce cette je vous nous il elle
        mon ma mes ai avez sont été au aux mais ou bonjour merci très depuis quand sans peut pouvez
        fait faire suis ne plus votre vos leur""",
    "pt": """o os e é um uma do da dos das no na nos nas em para com não por mais meu minha você
        vocês ele ela foi está estão tenho tem olá obrigado obrigada muito já quando porque sem sobre
        até desde também há seu sua pelo pela isso este esta""",
}


def _build() -> dict[str, str]:
    seen: Counter[str] = Counter()
    lists = {lang: set(words.split()) for lang, words in _STOPWORDS.items()}
    for words in lists.values():
        seen.update(words)
    return {w: lang for lang, words in lists.items() for w in words if seen[w] == 1}


WORD_LANGUAGE = _build()  # distinctive word -> its language
assert set(_STOPWORDS) == set(LANGUAGES), "a stopword list per language of server.results.Language"
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
MAX_WORDS = 400  # the start of a ticket says which language it is in; long ones need not be read whole


def detect_language(text: str, *, min_hits: int = 2) -> DetectedLanguage:
    """One of en/de/es/fr/pt, or "unknown" when the evidence is too thin or tied."""
    hits: Counter[str] = Counter()
    for match in islice(_WORD.finditer(text.lower()), MAX_WORDS):
        lang = WORD_LANGUAGE.get(match.group())
        if lang is not None:
            hits[lang] += 1
    if not hits:
        return UNKNOWN
    ranked = hits.most_common(2)
    best, count = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0
    if count < min_hits or count <= runner_up:
        return UNKNOWN
    return best  # type: ignore[return-value]  # a key of WORD_LANGUAGE: a Language
