"""Small PII sets written by hand after the recognisers were tuned on the generated ones.

    .venv/bin/python data/pii/build_handwritten.py [--out data/pii/handwritten.jsonl]

`TEXTS` (handwritten.jsonl) was written after the tuning on testset/holdout and measured once
(recall 0.762); six general gaps it showed were then closed (bare "pass is", "arobase",
"Kd.-Nr."/"Ref:", "Rosenheimer Straße", "the code I got is", lower-case names after "I'm"/"soy"),
so it is no longer clean. `FRESH` (handwritten_fresh.jsonl, `--fresh`) was written after that
and measured once (recall 0.879); three general gaps it showed were closed too (a card number
that fails Luhn after "Kreditkarte", "the password given was X" / "a senha X", "(a)" for @), so
neither set is a clean hold-out any more: their numbers after the fixes (0.952, 0.970) are
optimistic, the first measurements are the honest ones.

Each text marks PII as [[TYPE|value]] and things that must survive as {{TYPE|value}}; this
script strips the marks and records offsets (same JSON format as testset.jsonl). Its recall is
reported as measured, misses included: it shows how the rules do on phrasing they were not
written against, with rarer names than either generated set.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARK = re.compile(r"\[\[([A-Z_]+)\|(.+?)\]\]|\{\{([A-Z_]+)\|(.+?)\}\}", re.S)

TEXTS: list[tuple[str, str]] = [
    ("en", "Hey,\nour intern [[PERSON|Siobhan Gallagher]] locked herself out. She says her pass is [[PASSWORD|Kettle!Drum77]]. Can you unlock?\nThx"),
    ("en", "Please update the shipping address to [[ADDRESS|31 Wellington Road, Cheltenham GL52 2AD]]. The {{PHRASE|order confirmation}} still shows the old one."),
    ("en", "I'm [[PERSON|tariq mahmood]], customer since 2019. Ref: [[CUSTOMER_ID|CUS-884120]]. Router shows {{ERROR_CODE|E1234}} after firmware {{VERSION|2.4.11}}."),
    ("en", "Can someone call [[PERSON|Priya Raman]] on [[PHONE_NUMBER|0161 496 0732]]? She handles our billing."),
    ("en", "Mail me: [[EMAIL_ADDRESS|j.okafor (at) fastmail.com]]. Also my DOB is [[DATE_OF_BIRTH|14/07/1979]] if you need to verify."),
    ("en", "Refund the {{AMOUNT|$89.00}} to IBAN [[IBAN_CODE|NL91ABNA0417164300]] please, not to card [[CREDIT_CARD|4539 1488 0343 6467]]."),
    ("en", "My SSO fails with {{ERROR_CODE|AADSTS700016}} on {{PRODUCT|Microsoft Teams}}. Tenant admin is [[PERSON|Declan Whitmore]]."),
    ("en", "The 2FA code [[PIN_CODE|640 218]] came through twice and my invoice [[INVOICE_NUMBER|INV/2024/00731]] is still unpaid."),
    ("de", "Servus,\nich bin [[PERSON|vroni huber]] und mein Kundenkonto ist gesperrt. Kd.-Nr. [[CUSTOMER_ID|4471920]].\nGrüße"),
    ("de", "Bitte schicken Sie die Rechnung an [[ADDRESS|Rosenheimer Straße 145, 81671 München]], z. Hd. [[PERSON|Wiebke Sörensen]]."),
    ("de", "Meine neue Handynummer: [[PHONE_NUMBER|0157 3348 9021]]. Das alte Passwort war [[PASSWORD|Maulwurf#2023]]."),
    ("de", "Geburtsdatum [[DATE_OF_BIRTH|02.11.1968]], Personalausweis [[NATIONAL_ID|T22000129]]. Fehler {{ERROR_CODE|HTTP 503}} seit {{DATE|gestern}}."),
    ("de", "Die Lastschrift ging von [[IBAN_CODE|DE75 5121 0800 1245 1261 99]] ab, obwohl ich gekündigt habe. Bestellung [[ORDER_ID|302-9918273-1122]]."),
    ("de", "Schreib mir an [[EMAIL_ADDRESS|oma.gertrud [at] t-online [dot] de]] oder ruf [[PHONE_NUMBER|+49 (0) 89 4521 7730]] an. Mein {{PRODUCT|FRITZ!Box 7530}} spinnt."),
    ("es", "Hola, soy [[PERSON|ximena ocaña]] y no me llega el SMS. Mi móvil es [[PHONE_NUMBER|622 41 87 09]]."),
    ("es", "Enviad el portátil a [[ADDRESS|Calle de Toledo 88, 4º izq., 28005 Madrid]]. Gracias."),
    ("es", "Mi DNI es [[NATIONAL_ID|48213765R]] y la fecha de nacimiento [[DATE_OF_BIRTH|3 de agosto de 1991]]. Versión {{VERSION|5.2.0}}."),
    ("es", "Habló conmigo [[PERSON|Remedios Villalobos]] de vuestro equipo; el número de pedido es [[ORDER_ID|ES-77120934]]."),
    ("es", "Contraseña: [[PASSWORD|girasol_88]] (ya sé que es mala). El error es {{ERROR_CODE|0x80004005}}."),
    ("es", "Tarjeta [[CREDIT_CARD|5425-2334-3010-9903]], cargo de {{AMOUNT|59,90 €}} duplicado el {{DATE|12/05/2024}}."),
    ("fr", "Bonjour, je suis [[PERSON|gwenaëlle le goff]], cliente depuis 2015. Mon numéro client est [[CUSTOMER_ID|FR-0093321]]."),
    ("fr", "Livraison au [[ADDRESS|17 rue Victor Hugo, 69002 Lyon]] svp. Ma {{PRODUCT|Freebox Pop}} affiche {{ERROR_CODE|erreur 27}}."),
    ("fr", "Mon adresse : [[EMAIL_ADDRESS|theo.marchand arobase gmail point com]]. Mot de passe provisoire : [[PASSWORD|Lune-Bleue-42]]."),
    ("fr", "Je suis née le [[DATE_OF_BIRTH|29/02/1984]] et mon passeport porte le numéro [[PASSPORT|19AB84721]]."),
    ("fr", "Veuillez contacter M. [[PERSON|Anselme Kerbrat]] au [[PHONE_NUMBER|06 71 22 93 40]] pour la facture [[INVOICE_NUMBER|FAC-2024-1187]]."),
    ("pt", "Olá, sou a [[PERSON|graça rebelo]] e a minha fatura [[INVOICE_NUMBER|FT 2024/3381]] vem com o NIF errado: o correto é [[NATIONAL_ID|245398710]]."),
    ("pt", "Morada nova: [[ADDRESS|Rua do Bonjardim, 512, 4000-124 Porto]]. O {{PRODUCT|MEO Box}} mostra {{ERROR_CODE|erro 502}}."),
    ("pt", "Meu CPF é [[NATIONAL_ID|529.982.247-25]] e nasci em [[DATE_OF_BIRTH|17/09/1990]]. Pedido [[ORDER_ID|BR-5582013]]."),
    ("pt", "Falei com o [[PERSON|Anderson Figueiredo]] ontem; o código que recebi foi [[PIN_CODE|839120]]."),
    ("pt", "Transferência para [[IBAN_CODE|PT50 0002 0123 1234 5678 9015 4]] falhou. Telemóvel [[PHONE_NUMBER|912 345 678]], email [[EMAIL_ADDRESS|rui_neves@sapo.pt]]."),
    ("en", "Our office IP is [[IP_ADDRESS|81.2.69.160]] and the VPN endpoint [[IP_ADDRESS|2a00:1450:4009:81f::200e]]. Build {{VERSION|22H2}}."),
    ("en", "Number plate [[LICENSE_PLATE|LB07 SEO]] got a parking fine at your car park on {{DATE|March 2}}. Booking ref [[ORDER_ID|PK-449201]]."),
    ("de", "Reset-Link: [[URL|https://konto.example.de/pw-reset?t=9fK2xQ7LmZ0aBc]] funktioniert nicht, nur {{ERROR_CODE|Fehler 403}}."),
    ("fr", "Voici le lien [[URL|https://partage.example.fr/s/Qm8ZtR2vXw]] et mon {{PRODUCT|iPhone 13}} est en {{VERSION|iOS 17.5}}."),
]


FRESH: list[tuple[str, str]] = [
    ("en", "Hiya, it's [[PERSON|Morag Lindqvist]] again (account [[ACCOUNT_NUMBER|GB-20931877]]). Still seeing {{ERROR_CODE|HTTP 500}} on the {{PRODUCT|Pixel 8}} app."),
    ("en", "Deliver to: [[ADDRESS|5 Abbey Mews, Bath BA1 1LY]]. Contact [[PHONE_NUMBER|07700 900461]] on arrival."),
    ("en", "My login is [[EMAIL_ADDRESS|FERGUS.DOYLE@EIRCOM.NET]] and the temporary password given was [[PASSWORD|Tq7#mZ2p]]."),
    ("en", "born [[DATE_OF_BIRTH|1 Feb 1972]], passport [[PASSPORT|533412987]] - needed for the KYC check after update {{VERSION|v5.0.2}}."),
    ("de", "Hallo, mein Name ist [[PERSON|Ottilie Brandstätter]]. Meine Kundennummer lautet [[CUSTOMER_ID|KN-7730915]], Rechnung [[INVOICE_NUMBER|2024-RE-44817]]."),
    ("de", "Neue Anschrift: [[ADDRESS|Uhlandstraße 7, 70182 Stuttgart]]. Tel. [[PHONE_NUMBER|0711 2290 431]]. Seit {{DATE|Montag}} kommt {{ERROR_CODE|Fehlercode 0x0001}}."),
    ("de", "Meine Kreditkarte [[CREDIT_CARD|4916 3380 1297 4402]] wurde am {{DATE|3. Mai}} doppelt belastet, IBAN [[IBAN_CODE|AT61 1904 3002 3457 3201]]."),
    ("es", "Buenas, me llamo [[PERSON|Candela Iturbe]]. Mi correo es [[EMAIL_ADDRESS|candela.iturbe [arroba] gmail [punto] com]]."),
    ("es", "Envío a [[ADDRESS|Avenida de América 31, 3º D, 28002 Madrid]]. Pedido nº [[ORDER_ID|112-4478231]], importe {{AMOUNT|149,00 €}}."),
    ("es", "Me pide el PIN [[PIN_CODE|2719]] cada vez y el NIE [[NATIONAL_ID|Y4821377M]] sale como inválido en la {{VERSION|versión 8.2}}."),
    ("fr", "Bonjour, c'est [[PERSON|maëlys pichon]], j'ai un souci avec ma commande n°[[ORDER_ID|FR58213377]]."),
    ("fr", "Merci d'appeler le [[PHONE_NUMBER|04 78 92 11 60]] ou d'écrire à [[EMAIL_ADDRESS|service.maison (a) wanadoo.fr]]."),
    ("fr", "Adresse : [[ADDRESS|8 allée des Tilleuls, 44300 Nantes]]. Le {{PRODUCT|Samsung Galaxy Tab S9}} affiche {{ERROR_CODE|code 0x12}}."),
    ("pt", "Bom dia, o meu nome é [[PERSON|Benedita Sarmento]] e o NIF é [[NATIONAL_ID|203145988]]."),
    ("pt", "Data de nascimento: [[DATE_OF_BIRTH|22/06/1983]]. Cartão [[CREDIT_CARD|5105 1051 0510 5100]] recusado com {{ERROR_CODE|erro 05}}."),
    ("pt", "Moro na [[ADDRESS|Rua Garrett, 74, 1200-204 Lisboa]]; o código de acesso é [[PIN_CODE|558301]] e a senha [[PASSWORD|Alfama!1985]]."),
]


def build(texts: list[tuple[str, str]] | None = None, prefix: str = "hw") -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    counters: dict[str, int] = {}
    for lang, marked in TEXTS if texts is None else texts:
        text, items, negatives, pos = "", [], [], 0
        for m in MARK.finditer(marked):
            text += marked[pos : m.start()]
            kind, value = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            record = {"type": kind, "value": value, "start": len(text), "end": len(text) + len(value)}
            (items if m.group(1) else negatives).append(record)
            text += value
            pos = m.end()
        text += marked[pos:]
        n = counters[lang] = counters.get(lang, -1) + 1
        rows.append({"id": f"{prefix}-{lang}-{n:03d}", "language": lang, "text": text, "items": items, "negatives": negatives})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--fresh", action="store_true", help="write the never-tuned FRESH set instead")
    args = ap.parse_args()
    out = args.out or HERE / ("handwritten_fresh.jsonl" if args.fresh else "handwritten.jsonl")
    rows = build(FRESH, "hwf") if args.fresh else build()
    with open(out, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
