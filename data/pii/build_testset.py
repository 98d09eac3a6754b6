"""Build the synthetic PII test set: ticket-like texts in en/de/es/fr/pt with planted personal data.

    .venv/bin/python data/pii/build_testset.py [--out data/pii/testset.jsonl] [--per-language 32] [--seed 20240611]

Every value is generated from the real-world format of its type (Luhn-valid card numbers with
real network prefixes and groupings, mod-97-valid IBANs with each country's BBAN layout,
national and international phone formats, SSA-valid SSNs, ...) and planted into sentences the
way customers write them, including ways no cue announces (a colleague's name mid-sentence,
"Bestellnummer", "pedido nº"). Nothing here is derived from the redactor. Distractors that must
survive redaction (error codes, versions, product names, amounts, dates, everyday phrases around
"order"/"account") are recorded as "negatives". Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
LANGUAGES = ("en", "de", "es", "fr", "pt")
PII_TYPES = ("CREDIT_CARD", "IBAN_CODE", "EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "US_SSN", "URL", "ACCOUNT_NUMBER", "ORDER_ID")


# --- value generators --------------------------------------------------------------------------


def digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def luhn_complete(prefix_and_body: str) -> str:
    """Append the Luhn check digit."""
    total = 0
    for i, ch in enumerate(reversed(prefix_and_body)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix_and_body + str((10 - total % 10) % 10)


# (network, prefix choices, length, grouping)
CARD_BRANDS: list[tuple[str, list[str], int, tuple[int, ...]]] = [
    ("visa", ["4"], 16, (4, 4, 4, 4)),
    ("visa13", ["4"], 13, (4, 4, 5)),
    ("mastercard", ["51", "52", "53", "54", "55"], 16, (4, 4, 4, 4)),
    ("mastercard2", [str(p) for p in range(2221, 2721, 37)], 16, (4, 4, 4, 4)),
    ("amex", ["34", "37"], 15, (4, 6, 5)),
    ("discover", ["6011", "644", "65"], 16, (4, 4, 4, 4)),
    ("diners", ["36", "38"], 14, (4, 6, 4)),
    ("jcb", [str(p) for p in range(3528, 3590, 7)], 16, (4, 4, 4, 4)),
    ("maestro", ["5018", "5020", "6304", "6759", "6763"], 19, (4, 4, 4, 4, 3)),
    ("unionpay", ["62"], 19, (4, 4, 4, 4, 3)),
]
CARD_WEIGHTS = [30, 3, 20, 8, 10, 6, 3, 5, 8, 4]


def card(rng: random.Random) -> str:
    _, prefixes, length, grouping = rng.choices(CARD_BRANDS, weights=CARD_WEIGHTS)[0]
    prefix = rng.choice(prefixes)
    number = luhn_complete(prefix + digits(rng, length - len(prefix) - 1))
    style = rng.choices(["space", "plain", "dash"], weights=[45, 35, 20])[0]
    if style == "plain":
        return number
    parts, pos = [], 0
    for g in grouping:
        parts.append(number[pos : pos + g])
        pos += g
    return (" " if style == "space" else "-").join(parts)


# BBAN layouts: n = digits, a = upper-case letters, c = alphanumerics (ISO 13616 registry).
IBAN_LAYOUTS = {
    "DE": "18n", "AT": "16n", "CH": "5n12c", "GB": "4a14n", "IE": "4a14n", "ES": "20n", "FR": "10n11c2n",
    "BE": "12n", "LU": "3n13c", "PT": "21n", "IT": "1a10n12c", "NL": "4a10n",
}  # fmt: skip
IBAN_BANKS = {"GB": ["NWBK", "BARC", "LOYD", "HBUK", "MIDL"], "IE": ["AIBK", "BOFI"], "NL": ["ABNA", "RABO", "INGB"]}
IBAN_COUNTRIES = {"en": ["GB", "IE"], "de": ["DE", "DE", "AT", "CH"], "es": ["ES"], "fr": ["FR", "FR", "BE", "LU"], "pt": ["PT"]}


def iban(rng: random.Random, lang: str) -> str:
    country = rng.choice(IBAN_COUNTRIES[lang] + ["DE", "NL", "IT"] * (rng.random() < 0.15))
    bban = ""
    for count, kind in re.findall(r"(\d+)([nac])", IBAN_LAYOUTS[country]):
        n = int(count)
        if kind == "a" and country in IBAN_BANKS and not bban:
            bban += rng.choice(IBAN_BANKS[country])
        elif kind == "a":
            bban += "".join(rng.choice(string.ascii_uppercase) for _ in range(n))
        elif kind == "c":
            bban += "".join(rng.choice(string.digits * 3 + string.ascii_uppercase) for _ in range(n))
        else:
            bban += digits(rng, n)
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    compact = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    if rng.random() < 0.6:  # the "paper format": groups of four
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
    return compact


def ascii_fold(s: str) -> str:
    s = s.replace("ß", "ss").replace("ä", "ae").replace("ö", "oe").replace("ü", "ue").replace("Ä", "Ae").replace("Ö", "Oe").replace("Ü", "Ue")
    return "".join(ch for ch in unicodedata.normalize("NFKD", s) if not unicodedata.combining(ch))


EMAIL_DOMAINS = {
    "en": ["gmail.com", "outlook.com", "yahoo.com", "icloud.com", "btinternet.com", "acme-corp.com"],
    "de": ["web.de", "gmx.de", "t-online.de", "gmx.at", "bluewin.ch", "mueller-gmbh.de", "gmail.com"],
    "es": ["gmail.com", "hotmail.es", "telefonica.net", "yahoo.es", "empresa-ejemplo.es"],
    "fr": ["orange.fr", "free.fr", "laposte.net", "gmail.com", "wanadoo.fr", "societe-exemple.fr"],
    "pt": ["sapo.pt", "gmail.com", "uol.com.br", "hotmail.com", "empresa.com.br", "netcabo.pt"],
}


def email(rng: random.Random, lang: str, first: str, last: str) -> str:
    f, l_ = ascii_fold(first).lower().replace(" ", ""), ascii_fold(last).lower().replace(" ", "").replace("'", "")
    local = rng.choice([f"{f}.{l_}", f"{f[0]}{l_}", f"{f}_{l_}{rng.randint(1, 99)}", f"{f}{rng.randint(70, 99)}", f"{f}.{l_}+shop", f"{l_}.{f}"])
    return f"{local}@{rng.choice(EMAIL_DOMAINS[lang])}"


def _spaced(s: str, groups: tuple[int, ...], sep: str = " ") -> str:
    out, pos = [], 0
    for g in groups:
        out.append(s[pos : pos + g])
        pos += g
    return sep.join(out)


def phone_us(rng: random.Random) -> str:
    area = rng.choice(["212", "312", "415", "617", "305", "206", "512", "303", "404", "702", "555"])
    exch = rng.choice(["555", str(rng.randint(201, 989))])
    line = f"01{rng.randint(0, 99):02d}" if exch == "555" else digits(rng, 4)
    return rng.choice([f"({area}) {exch}-{line}", f"{area}-{exch}-{line}", f"{area}.{exch}.{line}", f"+1 {area} {exch} {line}", f"+1-{area}-{exch}-{line}"])


def phone_gb(rng: random.Random) -> str:
    if rng.random() < 0.5:
        tail = f"0{rng.randint(0, 999):03d}"
        return rng.choice([f"020 7946 {tail}", f"+44 20 7946 {tail}", f"(020) 7946 {tail}"])
    tail = f"900{rng.randint(0, 999):03d}"
    return rng.choice([f"07700 {tail}", f"+44 7700 {tail}"])


def phone_de(rng: random.Random) -> str:
    if rng.random() < 0.45:
        prefix = rng.choice(["151", "152", "157", "160", "162", "170", "171", "172", "173", "175", "176", "177", "178", "179"])
        sub = digits(rng, rng.choice([7, 8])).lstrip("0").rjust(7, "1")
        return rng.choice([f"0{prefix} {sub}", f"0{prefix}/{sub}", f"+49 {prefix} {sub}", f"0{prefix}-{sub}"])
    area = rng.choice(["30", "89", "40", "221", "69", "711", "211", "341"])
    sub = str(rng.randint(2, 9)) + digits(rng, rng.choice([6, 7]) - (len(area) > 2))
    return rng.choice([f"0{area} {sub}", f"0{area}/{sub}", f"0{area}-{sub}", f"+49 {area} {sub}", f"+49 (0){area} {sub}", f"+49 {area} {_spaced(sub, (3, len(sub) - 3))}"])


def phone_at(rng: random.Random) -> str:
    return rng.choice([f"+43 1 {rng.randint(200, 999)} {digits(rng, 4)}", f"0664 {rng.randint(1, 9)}{digits(rng, 6)}", f"+43 664 {rng.randint(1, 9)}{digits(rng, 6)}"])


def phone_ch(rng: random.Random) -> str:
    rest = f"{rng.randint(200, 999)} {digits(rng, 2)} {digits(rng, 2)}"
    return rng.choice([f"+41 44 {rest}", f"044 {rest}", f"079 {rest}", f"+41 79 {rest}"])


def phone_es(rng: random.Random) -> str:
    if rng.random() < 0.6:
        n = "6" + digits(rng, 8) if rng.random() < 0.8 else "7" + rng.choice("1234") + digits(rng, 7)  # 71-74: mobile
        return rng.choice([_spaced(n, (3, 3, 3)), _spaced(n, (3, 2, 2, 2)), "+34 " + _spaced(n, (3, 3, 3)), "+34 " + n, n])
    n = rng.choice(["91", "93", "95", "96"]) + str(rng.randint(1, 9)) + digits(rng, 6)
    return rng.choice([_spaced(n, (2, 3, 2, 2)), _spaced(n, (3, 3, 3)), "+34 " + _spaced(n, (2, 3, 2, 2))])


def phone_mx(rng: random.Random) -> str:
    n = "55" + str(rng.randint(1, 9)) + digits(rng, 7)
    return rng.choice(["+52 " + _spaced(n, (2, 4, 4)), _spaced(n, (2, 4, 4)), "+52 1 " + _spaced(n, (2, 4, 4))])


def phone_fr(rng: random.Random) -> str:
    n = rng.choice(["1", "2", "3", "4", "5", "6", "7", "6", "7"]) + digits(rng, 8)
    pairs = _spaced(n[1:], (2, 2, 2, 2))
    return rng.choice([f"0{n[0]} {pairs}", f"0{n[0]}.{pairs.replace(' ', '.')}", f"+33 {n[0]} {pairs}", f"+33 (0){n[0]} {pairs}", f"0{n}"])


def phone_be(rng: random.Random) -> str:
    return rng.choice([f"+32 2 {rng.randint(200, 999)} {digits(rng, 2)} {digits(rng, 2)}", f"0470 {digits(rng, 2)} {digits(rng, 2)} {digits(rng, 2)}", f"+32 470 {digits(rng, 2)} {digits(rng, 2)} {digits(rng, 2)}"])


def phone_pt(rng: random.Random) -> str:
    n = (rng.choice(["91", "92", "93", "96"]) if rng.random() < 0.6 else rng.choice(["21", "22"])) + str(rng.randint(1, 9)) + digits(rng, 6)
    return rng.choice([_spaced(n, (3, 3, 3)), "+351 " + _spaced(n, (3, 3, 3)), "+351 " + n, n, _spaced(n, (2, 3, 4))])


def phone_br(rng: random.Random) -> str:
    ddd = rng.choice(["11", "21", "31", "41", "51", "61", "71", "81"])
    if rng.random() < 0.7:
        n = "9" + str(rng.randint(6, 9)) + digits(rng, 7)
        return rng.choice([f"({ddd}) {n[:5]}-{n[5:]}", f"+55 {ddd} {n[:5]}-{n[5:]}", f"+55 ({ddd}) {n[:5]}-{n[5:]}", f"{ddd} {n[:5]}-{n[5:]}"])
    n = str(rng.randint(2, 5)) + digits(rng, 7)
    return rng.choice([f"({ddd}) {n[:4]}-{n[4:]}", f"+55 {ddd} {n[:4]}-{n[4:]}"])


PHONES: dict[str, list[Callable[[random.Random], str]]] = {
    "en": [phone_us, phone_us, phone_gb],
    "de": [phone_de, phone_de, phone_at, phone_ch],
    "es": [phone_es, phone_es, phone_mx],
    "fr": [phone_fr, phone_fr, phone_be, phone_ch],
    "pt": [phone_pt, phone_br],
}


def ip(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.15:
        return f"2001:db8:{rng.randint(0, 0xFFFF):x}:{rng.randint(0, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}"
    if r < 0.45:
        return f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if r < 0.6:
        return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    return f"{rng.choice([62, 77, 81, 85, 88, 91, 185, 203, 198, 213])}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    s = f"{area:03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"
    return rng.choices([f"{s[:3]}-{s[3:5]}-{s[5:]}", f"{s[:3]} {s[3:5]} {s[5:]}", s], weights=[70, 15, 15])[0]


URL_HOSTS = {
    "en": ["shop.example.com", "www.acme-store.com", "portal.example.org", "imgur.com", "drive.google.com", "myhome-blog.net"],
    "de": ["www.mein-shop.de", "kundenportal.example.de", "shop.beispiel.de", "imgur.com", "cloud.example.at"],
    "es": ["www.mi-tienda.es", "tienda.ejemplo.es", "clientes.ejemplo.com.mx", "imgur.com"],
    "fr": ["www.boutique-exemple.fr", "espace-client.exemple.fr", "imgur.com", "monsite.example.be"],
    "pt": ["www.loja-exemplo.pt", "cliente.exemplo.com.br", "imgur.com", "minhaconta.exemplo.pt"],
}


def url(rng: random.Random, lang: str, user: str) -> str:
    host = rng.choice(URL_HOSTS[lang])
    token = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(rng.randint(6, 12)))
    path = rng.choice([f"/account/orders/{rng.randint(10000, 99999)}", f"/a/{token}", f"/file/d/{token}/view", f"/profile/{user}", f"/reset-password?token={token}", f"/u/{user}?ref=mail", f"/help/{token}"])
    scheme = rng.choices(["https://", "http://", ""], weights=[70, 10, 20])[0]
    if not scheme and not host.startswith("www."):
        host = rng.choice([host, "www." + host.split(".", 1)[-1] if host.count(".") > 1 else host])
    return f"{scheme}{host}{path}"


ID_CHARS = string.ascii_uppercase + string.digits


def account_value(rng: random.Random) -> str:
    return rng.choice([digits(rng, rng.randint(8, 10)), f"AC-{rng.randint(100000, 999999)}", f"{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}-{rng.randint(10, 99)}", f"CU{rng.randint(1000000, 9999999)}"])


def order_value(rng: random.Random) -> str:
    return rng.choice(
        [
            f"{rng.choice(ID_CHARS[:26])}-{rng.randint(10000, 99999)}",
            f"{rng.randint(100, 999)}-{rng.randint(1000000, 9999999)}-{rng.randint(1000000, 9999999)}",  # marketplace style
            str(rng.randint(10000, 999999999)),
            f"ORD-{rng.randint(2019, 2025)}-{rng.randint(1000, 99999):05d}",
            f"{rng.choice(['DE', 'ES', 'FR', 'PT', 'US'])}{rng.randint(10000000, 99999999)}",
        ]
    )


# --- names -------------------------------------------------------------------------------------

FIRST = {
    "en": ["James", "Emily", "Michael", "Sarah", "David", "Jessica", "Robert", "Olivia", "Daniel", "Megan", "Christopher", "Hannah"],
    "de": ["Lukas", "Anna", "Jürgen", "Sabine", "Maximilian", "Katharina", "Thomas", "Ursula", "Stefan", "Lena", "Jörg", "Birgit"],
    "es": ["José", "María", "Lucía", "Javier", "Carmen", "Alejandro", "Sofía", "Manuel", "Elena", "Pablo", "Begoña", "Íñigo"],
    "fr": ["Chloé", "François", "Amélie", "Jean-Baptiste", "Camille", "Hélène", "Théo", "Émilie", "Nicolas", "Margaux", "Sébastien", "Inès"],
    "pt": ["João", "Ana", "Gonçalo", "Inês", "Tiago", "Beatriz", "Rui", "Mariana", "Luís", "Catarina", "Paulo", "Leonor"],
}
LAST = {
    "en": ["Smith", "Johnson", "O'Brien", "McDonald", "Taylor", "Brown", "Wilson", "Thompson", "Walker", "Harris", "Clarke", "Evans"],
    "de": ["Müller", "Schmidt", "Schneider", "Fischer", "Weiß", "Meyer", "Wagner", "Becker", "Schäfer", "Hoffmann", "Krüger", "Zimmermann"],
    "es": ["García", "Fernández", "López", "Martínez", "Sánchez", "Pérez", "Gómez", "Ruiz", "Díaz", "Hernández", "Jiménez", "Muñoz"],
    "fr": ["Dubois", "Lefèvre", "Martin", "Bernard", "Moreau", "Laurent", "Girard", "Rousseau", "Fontaine", "Chevalier", "Lemaire", "Dupont"],
    "pt": ["Silva", "Santos", "Ferreira", "Pereira", "Oliveira", "Costa", "Rodrigues", "Martins", "Sousa", "Fernandes", "Gonçalves", "Carvalho"],
}


def person(rng: random.Random, lang: str) -> tuple[str, str]:
    first, last = rng.choice(FIRST[lang]), rng.choice(LAST[lang])
    if lang == "es" and rng.random() < 0.4:
        last = f"{last} {rng.choice([x for x in LAST['es'] if x != last])}"
    if lang == "pt" and rng.random() < 0.3:
        last = rng.choice(["da Silva", "dos Santos", "da Costa", "de Sousa"])
    if lang == "de" and rng.random() < 0.1:
        last = rng.choice(["von Bergen", "Müller-Lüdenscheidt"])
    return first, last


# --- distractors -------------------------------------------------------------------------------

NEG_VALUES: dict[str, dict[str, list[str]]] = {
    "ERROR_CODE": {"*": ["ERR-504", "E1234", "0x80070005", "HTTP 500", "error 404", "code 1603", "EC-2041", "NET::ERR_CERT_DATE_INVALID", "SQLSTATE 23505", "0xC000021A", "ERR_CONNECTION_RESET", "E-403"]},
    "VERSION": {"*": ["2.3.1", "v4.12.0", "10.0.19045", "17.4.1", "3.11.7", "v2.0.0-beta.3", "8.1", "121.0.6167.85", "5.15.0-91"]},
    "PRODUCT": {"*": ["ProBook 450 G8", "Galaxy S23 Ultra", "AcmeSync Pro", "ThinkPad X1 Carbon", "Office 365", "Kindle Paperwhite", "PlayStation 5", "FRITZ!Box 7590", "iPhone 15 Pro", "Surface Laptop 5", "Echo Dot", "HomePod mini", "Windows 11", "Pixel 8"]},
    "AMOUNT": {
        "en": ["$1,299.00", "£49.99", "$19.99", "USD 250", "$4.50"],
        "de": ["1.299,00 €", "49,99 EUR", "19,99 €", "250 CHF", "4,50 €"],
        "es": ["1.299,00 €", "49,99 €", "19,99 euros", "MXN 2,500"],
        "fr": ["1 299,00 €", "49,99 €", "19,99 EUR", "250 CHF"],
        "pt": ["1.299,00 €", "R$ 250,00", "49,99 €", "R$ 19,90"],
    },
    "DATE": {
        "en": ["March 3, 2024", "03/15/2024", "2024-03-15", "12 May 2023", "yesterday at 14:30"],
        "de": ["15.03.2024", "15. März 2024", "2024-03-15", "01.12.2023"],
        "es": ["15/03/2024", "15 de marzo de 2024", "2024-03-15", "01/12/2023"],
        "fr": ["15/03/2024", "15 mars 2024", "2024-03-15", "1er décembre 2023"],
        "pt": ["15/03/2024", "15 de março de 2024", "2024-03-15", "01/12/2023"],
    },
    "PHRASE": {
        "en": ["order status", "account settings", "order history", "account overview", "order confirmation"],
        "de": ["Bestellung storniert", "Konto gesperrt", "Kundenkonto", "Bestellübersicht", "Kontoeinstellungen"],
        "es": ["cuenta bloqueada", "pedido cancelado", "configuración de la cuenta", "historial de pedidos"],
        "fr": ["compte bloqué", "commande annulée", "paramètres du compte", "historique des commandes"],
        "pt": ["conta bloqueada", "pedido cancelado", "encomenda atrasada", "definições da conta"],
    },
}


def neg_value(rng: random.Random, kind: str, lang: str) -> str:
    table = NEG_VALUES[kind]
    return rng.choice(table.get(lang, table.get("*", [])))


# --- templates ---------------------------------------------------------------------------------
# Slots: {CREDIT_CARD} ... {ORDER_ID}, {PERSON_FULL}, {PERSON_FIRST}, {PERSON_LAST}, {OTHER_FULL}
# (a second person), {NEG_<KIND>}.

T: dict[str, dict[str, list[str]]] = {
    "en": {
        "greet_name": ["Dear {AGENT_FULL},", "Hi {AGENT_FIRST},", "Hello {AGENT_FIRST},", "Dear Mr. {PERSON_LAST_AGENT},", "Dear Ms. {PERSON_LAST_AGENT},"],
        "greet": ["Hello,", "Hi team,", "Dear Sir or Madam,", "Hi there,", "Hello support,"],
        "sign_name": ["Best regards,\n{PERSON_FULL}", "Thanks,\n{PERSON_FIRST}", "Kind regards,\n{PERSON_FULL}", "Sincerely,\n{PERSON_FULL}", "Cheers, {PERSON_FIRST}", "Regards,\n{PERSON_FULL}\n{NEG_PRODUCT} user"],
        "sign": ["Thanks in advance!", "Best regards", "Thank you."],
        "person_mid": ["My name is {PERSON_FULL} and I manage our company subscription.", "I already spoke with {OTHER_FULL} from your billing team last week.", "My colleague {OTHER_FULL} has the same problem on her laptop.", "Please send the replacement to Mr. {OTHER_LAST} at our front desk."],
        "CREDIT_CARD": ["I was charged twice on my card {CREDIT_CARD} for the same subscription.", "The payment with card number {CREDIT_CARD} keeps failing with {NEG_ERROR_CODE}.", "Please refund the {NEG_AMOUNT} to {CREDIT_CARD} (expires 09/27).", "Card used: {CREDIT_CARD}"],
        "IBAN_CODE": ["Please send the refund to my bank account, IBAN {IBAN_CODE}.", "The direct debit from {IBAN_CODE} was taken twice.", "New bank details: {IBAN_CODE}"],
        "EMAIL_ADDRESS": ["You can reach me at {EMAIL_ADDRESS} any time.", "My login email is {EMAIL_ADDRESS} but the reset mail never arrives.", "Please change the contact address to {EMAIL_ADDRESS}."],
        "PHONE_NUMBER": ["Please call me back on {PHONE_NUMBER}.", "My phone number is {PHONE_NUMBER}, best after 5pm.", "The SMS code is sent to {PHONE_NUMBER}, which is an old number."],
        "IP_ADDRESS": ["The device at {IP_ADDRESS} cannot reach the server.", "Login was blocked from IP {IP_ADDRESS} although that is my home connection.", "Our firewall shows requests from {IP_ADDRESS}."],
        "US_SSN": ["For the tax form I entered my SSN {US_SSN} but it is rejected.", "My social security number is {US_SSN}, please update the W-9.", "SSN: {US_SSN}"],
        "URL": ["Here is a screenshot: {URL}", "The link {URL} shows an error page.", "You can see my profile at {URL} ."],
        "ACCOUNT_NUMBER": ["My account number is {ACCOUNT_NUMBER}.", "Account #: {ACCOUNT_NUMBER}", "This concerns customer account {ACCOUNT_NUMBER}.", "acct no. {ACCOUNT_NUMBER} was closed by mistake.", "My account ID is {ACCOUNT_NUMBER}."],
        "ORDER_ID": ["My order #{ORDER_ID} has not arrived.", "Order No. {ORDER_ID} was delivered damaged.", "I want to cancel order {ORDER_ID}.", "Order ID: {ORDER_ID}", "The order number is {ORDER_ID}."],
        "neg": ["After updating to version {NEG_VERSION} the app shows {NEG_ERROR_CODE}.", "My {NEG_PRODUCT} stopped syncing on {NEG_DATE}.", "I paid {NEG_AMOUNT} but the {NEG_PHRASE} page still says pending.", "Since {NEG_DATE} I get {NEG_ERROR_CODE} when opening {NEG_PRODUCT}.", "Where can I find the {NEG_PHRASE}?"],
        "filler": ["I can't log in since this morning.", "This is really urgent, we have a demo tomorrow.", "Nothing has changed on our side.", "I have attached the log file."],
    },
    "de": {
        "greet_name": ["Sehr geehrte Frau {PERSON_LAST_AGENT},", "Sehr geehrter Herr {PERSON_LAST_AGENT},", "Hallo {AGENT_FIRST},", "Liebe {AGENT_FIRST},", "Guten Tag Herr {PERSON_LAST_AGENT},"],
        "greet": ["Sehr geehrte Damen und Herren,", "Hallo zusammen,", "Guten Tag,", "Hallo Support-Team,", "Hallo,"],
        "sign_name": ["Mit freundlichen Grüßen\n{PERSON_FULL}", "Viele Grüße\n{PERSON_FIRST}", "Beste Grüße,\n{PERSON_FULL}", "MfG\n{PERSON_FULL}", "Liebe Grüße\n{PERSON_FIRST}", "Freundliche Grüße\n{PERSON_FULL}\n{NEG_PRODUCT}-Kunde"],
        "sign": ["Vielen Dank im Voraus!", "Viele Grüße", "Danke."],
        "person_mid": ["Mein Name ist {PERSON_FULL} und ich verwalte unser Firmenabo.", "Ich habe letzte Woche schon mit {OTHER_FULL} aus Ihrer Buchhaltung telefoniert.", "Mein Kollege {OTHER_FULL} hat das gleiche Problem.", "Bitte schicken Sie den Ersatz an Frau {OTHER_LAST} am Empfang."],
        "CREDIT_CARD": ["Meine Kreditkarte {CREDIT_CARD} wurde doppelt belastet.", "Die Zahlung mit der Karte {CREDIT_CARD} schlägt mit {NEG_ERROR_CODE} fehl.", "Bitte erstatten Sie die {NEG_AMOUNT} auf {CREDIT_CARD}.", "Kartennummer: {CREDIT_CARD}"],
        "IBAN_CODE": ["Bitte überweisen Sie die Erstattung auf IBAN {IBAN_CODE}.", "Die Lastschrift von {IBAN_CODE} wurde zweimal eingezogen.", "Neue Bankverbindung: {IBAN_CODE}"],
        "EMAIL_ADDRESS": ["Sie erreichen mich unter {EMAIL_ADDRESS}.", "Meine Login-E-Mail ist {EMAIL_ADDRESS}, aber die Reset-Mail kommt nie an.", "Bitte ändern Sie die Kontaktadresse auf {EMAIL_ADDRESS}."],
        "PHONE_NUMBER": ["Bitte rufen Sie mich unter {PHONE_NUMBER} zurück.", "Meine Telefonnummer ist {PHONE_NUMBER}.", "Die SMS geht an {PHONE_NUMBER}, das ist eine alte Nummer.", "Tel.: {PHONE_NUMBER}"],
        "IP_ADDRESS": ["Das Gerät mit der IP {IP_ADDRESS} erreicht den Server nicht.", "Der Login von {IP_ADDRESS} wurde blockiert, obwohl das mein Anschluss ist.", "Unsere Firewall zeigt Anfragen von {IP_ADDRESS}."],
        "US_SSN": ["Für das US-Steuerformular habe ich meine SSN {US_SSN} angegeben.", "Meine Social Security Number ist {US_SSN}."],
        "URL": ["Hier ein Screenshot: {URL}", "Der Link {URL} zeigt eine Fehlerseite.", "Mein Profil: {URL}"],
        "ACCOUNT_NUMBER": ["Meine Kontonummer ist {ACCOUNT_NUMBER}.", "Kontonummer: {ACCOUNT_NUMBER}", "Es geht um das Kundenkonto {ACCOUNT_NUMBER}.", "Konto-Nr. {ACCOUNT_NUMBER} wurde versehentlich gesperrt.", "Konto {ACCOUNT_NUMBER}"],
        "ORDER_ID": ["Meine Bestellung {ORDER_ID} ist nicht angekommen.", "Bestellnummer: {ORDER_ID}", "Bestellung Nr. {ORDER_ID} kam beschädigt an.", "Ich möchte die Bestellung #{ORDER_ID} stornieren.", "Auftragsnummer {ORDER_ID}"],
        "neg": ["Nach dem Update auf Version {NEG_VERSION} zeigt die App {NEG_ERROR_CODE}.", "Mein {NEG_PRODUCT} synchronisiert seit dem {NEG_DATE} nicht mehr.", "Ich habe {NEG_AMOUNT} bezahlt, aber {NEG_PHRASE} steht noch da.", "Seit {NEG_DATE} kommt {NEG_ERROR_CODE} beim Öffnen von {NEG_PRODUCT}."],
        "filler": ["Ich kann mich seit heute Morgen nicht anmelden.", "Es ist dringend, wir haben morgen eine Präsentation.", "Bei uns hat sich nichts geändert.", "Die Logdatei ist angehängt."],
    },
    "es": {
        "greet_name": ["Estimado Sr. {PERSON_LAST_AGENT}:", "Hola {AGENT_FIRST},", "Estimada {AGENT_FIRST}:", "Buenos días, Sra. {PERSON_LAST_AGENT}:"],
        "greet": ["Hola,", "Estimado equipo de soporte:", "Buenos días,", "Hola equipo,"],
        "sign_name": ["Atentamente,\n{PERSON_FULL}", "Saludos,\n{PERSON_FIRST}", "Un saludo,\n{PERSON_FULL}", "Saludos cordiales,\n{PERSON_FULL}", "Gracias,\n{PERSON_FIRST}"],
        "sign": ["Gracias de antemano.", "Saludos.", "Un saludo"],
        "person_mid": ["Me llamo {PERSON_FULL} y gestiono la suscripción de la empresa.", "Ya hablé con {OTHER_FULL} de facturación la semana pasada.", "Mi compañero {OTHER_FULL} tiene el mismo problema.", "Envíen el repuesto a la Sra. {OTHER_LAST}, en recepción."],
        "CREDIT_CARD": ["Me han cobrado dos veces en la tarjeta {CREDIT_CARD}.", "El pago con la tarjeta {CREDIT_CARD} falla con {NEG_ERROR_CODE}.", "Devuelvan los {NEG_AMOUNT} a la tarjeta {CREDIT_CARD}.", "Número de tarjeta: {CREDIT_CARD}"],
        "IBAN_CODE": ["Hagan la devolución a mi cuenta, IBAN {IBAN_CODE}.", "El recibo domiciliado en {IBAN_CODE} se cobró dos veces.", "Mis nuevos datos bancarios: {IBAN_CODE}"],
        "EMAIL_ADDRESS": ["Pueden escribirme a {EMAIL_ADDRESS}.", "Mi correo de acceso es {EMAIL_ADDRESS} pero no recibo el enlace.", "Cambien el correo de contacto a {EMAIL_ADDRESS}."],
        "PHONE_NUMBER": ["Llámenme al {PHONE_NUMBER}, por favor.", "Mi teléfono es {PHONE_NUMBER}.", "El SMS llega al {PHONE_NUMBER}, que es un número antiguo.", "Móvil: {PHONE_NUMBER}"],
        "IP_ADDRESS": ["El equipo con IP {IP_ADDRESS} no conecta con el servidor.", "Bloquearon el acceso desde {IP_ADDRESS}, que es mi conexión de casa."],
        "US_SSN": ["Para el formulario de impuestos de EE. UU. puse mi SSN {US_SSN}.", "Mi número de seguro social (SSN) es {US_SSN}."],
        "URL": ["Aquí una captura: {URL}", "El enlace {URL} da error.", "Mi perfil: {URL}"],
        "ACCOUNT_NUMBER": ["Mi número de cuenta es {ACCOUNT_NUMBER}.", "Cuenta: {ACCOUNT_NUMBER}", "Se trata de la cuenta de cliente {ACCOUNT_NUMBER}.", "La cuenta n.º {ACCOUNT_NUMBER} fue cerrada por error."],
        "ORDER_ID": ["Mi pedido {ORDER_ID} no ha llegado.", "Pedido nº {ORDER_ID}", "Quiero cancelar el pedido #{ORDER_ID}.", "El número de pedido es {ORDER_ID}.", "Número de pedido: {ORDER_ID}"],
        "neg": ["Desde la versión {NEG_VERSION} la app muestra {NEG_ERROR_CODE}.", "Mi {NEG_PRODUCT} no sincroniza desde el {NEG_DATE}.", "Pagué {NEG_AMOUNT} pero sigue apareciendo {NEG_PHRASE}.", "Desde el {NEG_DATE} sale {NEG_ERROR_CODE} al abrir {NEG_PRODUCT}."],
        "filler": ["No puedo iniciar sesión desde esta mañana.", "Es urgente, mañana tenemos una demo.", "No hemos cambiado nada.", "Adjunto el archivo de registro."],
    },
    "fr": {
        "greet_name": ["Bonjour Madame {PERSON_LAST_AGENT},", "Bonjour {AGENT_FIRST},", "Cher Monsieur {PERSON_LAST_AGENT},", "Bonjour M. {PERSON_LAST_AGENT},"],
        "greet": ["Bonjour,", "Madame, Monsieur,", "Bonjour à toute l'équipe,", "Bonsoir,"],
        "sign_name": ["Cordialement,\n{PERSON_FULL}", "Bien cordialement,\n{PERSON_FULL}", "Merci,\n{PERSON_FIRST}", "Bien à vous,\n{PERSON_FULL}", "Salutations,\n{PERSON_FULL}"],
        "sign": ["Merci d'avance.", "Cordialement", "Bonne journée."],
        "person_mid": ["Je m'appelle {PERSON_FULL} et je gère l'abonnement de la société.", "J'ai déjà parlé avec {OTHER_FULL} du service facturation.", "Mon collègue {OTHER_FULL} a le même problème.", "Merci d'envoyer la pièce à Mme {OTHER_LAST} à l'accueil."],
        "CREDIT_CARD": ["Ma carte {CREDIT_CARD} a été débitée deux fois.", "Le paiement avec la carte {CREDIT_CARD} échoue avec {NEG_ERROR_CODE}.", "Merci de rembourser les {NEG_AMOUNT} sur la carte {CREDIT_CARD}.", "Numéro de carte : {CREDIT_CARD}"],
        "IBAN_CODE": ["Merci de rembourser sur mon compte, IBAN {IBAN_CODE}.", "Le prélèvement sur {IBAN_CODE} a été fait deux fois.", "Mes nouvelles coordonnées bancaires : {IBAN_CODE}"],
        "EMAIL_ADDRESS": ["Vous pouvez me joindre à {EMAIL_ADDRESS}.", "Mon adresse de connexion est {EMAIL_ADDRESS} mais je ne reçois pas le lien.", "Merci de changer l'adresse de contact pour {EMAIL_ADDRESS}."],
        "PHONE_NUMBER": ["Merci de me rappeler au {PHONE_NUMBER}.", "Mon numéro de téléphone est le {PHONE_NUMBER}.", "Le SMS part au {PHONE_NUMBER}, un ancien numéro.", "Tél. : {PHONE_NUMBER}"],
        "IP_ADDRESS": ["L'appareil {IP_ADDRESS} n'arrive pas à joindre le serveur.", "La connexion depuis {IP_ADDRESS} a été bloquée alors que c'est ma box."],
        "US_SSN": ["Pour le formulaire fiscal américain j'ai indiqué mon SSN {US_SSN}.", "Mon numéro de sécurité sociale américain (SSN) est {US_SSN}."],
        "URL": ["Voici une capture : {URL}", "Le lien {URL} affiche une erreur.", "Mon profil : {URL}"],
        "ACCOUNT_NUMBER": ["Mon numéro de compte est {ACCOUNT_NUMBER}.", "Compte : {ACCOUNT_NUMBER}", "Il s'agit du compte n° {ACCOUNT_NUMBER}.", "Numéro de compte client : {ACCOUNT_NUMBER}"],
        "ORDER_ID": ["Ma commande {ORDER_ID} n'est pas arrivée.", "Commande n° {ORDER_ID}", "Je veux annuler la commande #{ORDER_ID}.", "Le numéro de commande est {ORDER_ID}."],
        "neg": ["Depuis la version {NEG_VERSION} l'application affiche {NEG_ERROR_CODE}.", "Mon {NEG_PRODUCT} ne se synchronise plus depuis le {NEG_DATE}.", "J'ai payé {NEG_AMOUNT} mais il est toujours écrit {NEG_PHRASE}.", "Depuis le {NEG_DATE} j'ai {NEG_ERROR_CODE} en ouvrant {NEG_PRODUCT}."],
        "filler": ["Je n'arrive plus à me connecter depuis ce matin.", "C'est urgent, nous avons une démo demain.", "Rien n'a changé de notre côté.", "Le fichier journal est en pièce jointe."],
    },
    "pt": {
        "greet_name": ["Prezado Sr. {PERSON_LAST_AGENT},", "Olá {AGENT_FIRST},", "Cara {AGENT_FIRST},", "Bom dia, Sra. {PERSON_LAST_AGENT},"],
        "greet": ["Olá,", "Prezados,", "Bom dia,", "Olá equipa,"],
        "sign_name": ["Atenciosamente,\n{PERSON_FULL}", "Cumprimentos,\n{PERSON_FULL}", "Obrigado,\n{PERSON_FIRST}", "Abraços,\n{PERSON_FIRST}", "Com os melhores cumprimentos,\n{PERSON_FULL}"],
        "sign": ["Obrigado desde já.", "Cumprimentos", "Att."],
        "person_mid": ["O meu nome é {PERSON_FULL} e giro a assinatura da empresa.", "Já falei com {OTHER_FULL} da faturação na semana passada.", "O meu colega {OTHER_FULL} tem o mesmo problema.", "Enviem a peça para a Sra. {OTHER_LAST} na receção."],
        "CREDIT_CARD": ["Cobraram duas vezes no meu cartão {CREDIT_CARD}.", "O pagamento com o cartão {CREDIT_CARD} falha com {NEG_ERROR_CODE}.", "Devolvam os {NEG_AMOUNT} para o cartão {CREDIT_CARD}.", "Número do cartão: {CREDIT_CARD}"],
        "IBAN_CODE": ["Façam o reembolso para o IBAN {IBAN_CODE}.", "O débito direto de {IBAN_CODE} foi cobrado duas vezes.", "Novos dados bancários: {IBAN_CODE}"],
        "EMAIL_ADDRESS": ["Podem contactar-me em {EMAIL_ADDRESS}.", "O meu email de acesso é {EMAIL_ADDRESS} mas o link não chega.", "Mudem o email de contacto para {EMAIL_ADDRESS}."],
        "PHONE_NUMBER": ["Liguem-me para o {PHONE_NUMBER}, por favor.", "O meu telefone é {PHONE_NUMBER}.", "O SMS vai para o {PHONE_NUMBER}, que é um número antigo.", "Telemóvel: {PHONE_NUMBER}"],
        "IP_ADDRESS": ["O equipamento com IP {IP_ADDRESS} não liga ao servidor.", "O acesso a partir de {IP_ADDRESS} foi bloqueado, mas é a minha ligação de casa."],
        "US_SSN": ["No formulário fiscal dos EUA indiquei o meu SSN {US_SSN}.", "O meu número de segurança social americano (SSN) é {US_SSN}."],
        "URL": ["Segue uma captura: {URL}", "O link {URL} dá erro.", "O meu perfil: {URL}"],
        "ACCOUNT_NUMBER": ["O número da minha conta é {ACCOUNT_NUMBER}.", "Conta: {ACCOUNT_NUMBER}", "Trata-se da conta nº {ACCOUNT_NUMBER}.", "Número de conta {ACCOUNT_NUMBER}"],
        "ORDER_ID": ["A minha encomenda {ORDER_ID} não chegou.", "Pedido {ORDER_ID}", "Quero cancelar a encomenda #{ORDER_ID}.", "Encomenda n.º {ORDER_ID}", "O número do pedido é {ORDER_ID}."],
        "neg": ["Desde a versão {NEG_VERSION} a aplicação mostra {NEG_ERROR_CODE}.", "O meu {NEG_PRODUCT} não sincroniza desde {NEG_DATE}.", "Paguei {NEG_AMOUNT} mas continua a aparecer {NEG_PHRASE}.", "Desde {NEG_DATE} aparece {NEG_ERROR_CODE} ao abrir o {NEG_PRODUCT}."],
        "filler": ["Não consigo entrar desde hoje de manhã.", "É urgente, temos uma demonstração amanhã.", "Não mudámos nada do nosso lado.", "Segue o ficheiro de registo em anexo."],
    },
}

SLOT = re.compile(r"\{([A-Z_]+)\}")


@dataclass
class Ticket:
    rng: random.Random
    lang: str
    parts: list[str] = field(default_factory=list)
    items: list[dict[str, object]] = field(default_factory=list)
    negatives: list[dict[str, object]] = field(default_factory=list)
    customer: tuple[str, str] = ("", "")
    other: tuple[str, str] = ("", "")
    agent: tuple[str, str] = ("", "")

    def __post_init__(self) -> None:
        self.customer = person(self.rng, self.lang)
        self.other = person(self.rng, self.lang)
        self.agent = person(self.rng, self.lang)

    @property
    def length(self) -> int:
        return sum(len(p) for p in self.parts)

    def _value(self, slot: str) -> tuple[str, str, bool]:
        """(type, value, is_negative) for a slot name."""
        rng, lang = self.rng, self.lang
        first, last = self.customer
        people = {
            "PERSON_FULL": f"{first} {last}", "PERSON_FIRST": first, "OTHER_FULL": " ".join(self.other), "OTHER_LAST": self.other[1],
            "AGENT_FIRST": self.agent[0], "PERSON_LAST_AGENT": self.agent[1], "AGENT_FULL": " ".join(self.agent),
        }  # fmt: skip
        if slot in people:
            return "PERSON", people[slot], False
        if slot.startswith("NEG_"):
            kind = slot[4:]
            return kind, neg_value(rng, kind, lang), True
        makers: dict[str, Callable[[], str]] = {
            "CREDIT_CARD": lambda: card(rng),
            "IBAN_CODE": lambda: iban(rng, lang),
            "EMAIL_ADDRESS": lambda: email(rng, lang, first, last),
            "PHONE_NUMBER": lambda: rng.choice(PHONES[lang])(rng),
            "IP_ADDRESS": lambda: ip(rng),
            "US_SSN": lambda: ssn(rng),
            "URL": lambda: url(rng, lang, ascii_fold(first).lower() + rng.choice(["", ".", "_"]) + ascii_fold(last).lower().replace(" ", "").replace("'", "")),
            "ACCOUNT_NUMBER": lambda: account_value(rng),
            "ORDER_ID": lambda: order_value(rng),
        }
        return slot, makers[slot](), False

    def add(self, template: str) -> None:
        pos = 0
        for m in SLOT.finditer(template):
            self.parts.append(template[pos : m.start()])
            kind, value, negative = self._value(m.group(1))
            start = self.length
            self.parts.append(value)
            record = {"type": kind, "value": value, "start": start, "end": start + len(value)}
            (self.negatives if negative else self.items).append(record)
            pos = m.end()
        self.parts.append(template[pos:])

    def text(self) -> str:
        return "".join(self.parts)


def build_ticket(rng: random.Random, lang: str, pii_types: list[str]) -> Ticket:
    t = T[lang]
    ticket = Ticket(rng, lang)
    lines: list[str] = []
    lines.append(rng.choice(t["greet_name"]) if rng.random() < 0.3 else rng.choice(t["greet"]))
    body = [rng.choice(t[kind]) for kind in pii_types]
    body += [rng.choice(t["neg"]) for _ in range(rng.choice([1, 1, 2]))]
    if rng.random() < 0.25:
        body.append(rng.choice(t["person_mid"]))
    if rng.random() < 0.5:
        body.append(rng.choice(t["filler"]))
    rng.shuffle(body)
    lines.append(" ".join(body))
    lines.append(rng.choice(t["sign_name"]) if rng.random() < 0.55 else rng.choice(t["sign"]))
    for i, line in enumerate(lines):
        ticket.add(line + ("\n\n" if i < len(lines) - 1 else ""))
    return ticket


def well_formed(ticket: Ticket) -> bool:
    """Each planted value occurs exactly as often as it was planted, and no negative overlaps
    or hides inside PII: otherwise "the value no longer appears" would be an unfair test."""
    text = ticket.text()
    planted: dict[str, int] = {}
    for it in ticket.items:
        planted[str(it["value"])] = planted.get(str(it["value"]), 0) + 1
    if any(text.count(v) != n for v, n in planted.items()):
        return False
    for neg in ticket.negatives:
        if text.count(str(neg["value"])) != sum(1 for n in ticket.negatives if n["value"] == neg["value"]):
            return False
        if any(str(neg["value"]) in str(it["value"]) or str(it["value"]) in str(neg["value"]) for it in ticket.items):
            return False
    return True


def build(per_language: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows = []
    for lang in LANGUAGES:
        # Round-robin over the types so each language covers every type evenly.
        cycle = list(PII_TYPES)
        rng.shuffle(cycle)
        k = 0
        for i in range(per_language):
            n = rng.choice([1, 2, 2, 3])
            types = []
            for _ in range(n):
                types.append(cycle[k % len(cycle)])
                k += 1
            types = list(dict.fromkeys(types))
            while True:
                ticket = build_ticket(rng, lang, types)
                if well_formed(ticket):
                    break
            rows.append({"id": f"{lang}-{i:03d}", "language": lang, "text": ticket.text(), "items": ticket.items, "negatives": ticket.negatives})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "testset.jsonl")
    ap.add_argument("--per-language", type=int, default=32)
    ap.add_argument("--seed", type=int, default=20240611)
    args = ap.parse_args()
    rows = build(args.per_language, args.seed)
    with open(args.out, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    per_type: dict[str, int] = {}
    for row in rows:
        for it in row["items"]:  # type: ignore[union-attr]
            per_type[it["type"]] = per_type.get(it["type"], 0) + 1  # type: ignore[index]
    n_neg = sum(len(row["negatives"]) for row in rows)  # type: ignore[arg-type]
    print(f"wrote {len(rows)} texts, {sum(per_type.values())} items, {n_neg} negatives to {args.out}: {dict(sorted(per_type.items()))}", file=sys.stderr)


if __name__ == "__main__":
    main()
