"""Build the hold-out PII set: formats the redactor was not written against, in en/de/es/fr/pt.

    .venv/bin/python data/pii/build_holdout.py [--out data/pii/holdout_formats.jsonl] [--per-language 36] [--seed 7117]

Written before any recogniser was changed for it (see git history), from how support tickets
actually carry personal data, not from the redactor's patterns: names mid-sentence, in lower
case, in capitals and as "Last, First"; obfuscated e-mails ("anna (at) web.de",
"x [at] y [dot] com"); postal addresses with each country's postcode; passport and national
ID numbers with their check digits (DNI/NIE letter, CPF, NIF, NIR key, Steuer-ID); dates of
birth; quoted passwords, PINs and one-time codes; local phone formats; IBANs compact, spaced and
lower case; card numbers grouped with spaces, dashes or dots; customer, account, order and
invoice numbers behind many labels; IPs with ports; URLs carrying tokens; licence plates.
Negatives that must survive: error codes, versions, product and company names, non-birth dates,
amounts and the label words without a number ("order confirmation", "Passwort vergessen").

Same JSON format as testset.jsonl. Standard library only; deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
LANGUAGES = ("en", "de", "es", "fr", "pt")
PII_TYPES = (
    "PERSON", "EMAIL_ADDRESS", "ADDRESS", "PASSPORT", "NATIONAL_ID", "DATE_OF_BIRTH", "PASSWORD", "PIN_CODE",
    "PHONE_NUMBER", "IBAN_CODE", "CREDIT_CARD", "ACCOUNT_NUMBER", "CUSTOMER_ID", "ORDER_ID", "INVOICE_NUMBER",
    "IP_ADDRESS", "URL", "LICENSE_PLATE",
)  # fmt: skip

Rng = random.Random


def digits(rng: Rng, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def upper(rng: Rng, n: int, alphabet: str = string.ascii_uppercase) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def fold(s: str) -> str:
    s = s.replace("ß", "ss").replace("ä", "ae").replace("ö", "oe").replace("ü", "ue")
    return "".join(ch for ch in unicodedata.normalize("NFKD", s) if not unicodedata.combining(ch))


# --- names (other names than testset.jsonl's) -----------------------------------------------------

FIRST = {
    "en": ["Oliver", "Charlotte", "George", "Amelia", "Harry", "Isla", "Noah", "Grace", "Jack", "Lily", "Ethan", "Chloe"],
    "de": ["Felix", "Marie", "Tobias", "Johanna", "Florian", "Sophie", "Matthias", "Claudia", "Dirk", "Heike", "Moritz", "Greta"],
    "es": ["Andrés", "Marta", "Diego", "Paula", "Raúl", "Nuria", "Sergio", "Rocío", "Álvaro", "Irene", "Jorge", "Pilar"],
    "fr": ["Mathieu", "Élodie", "Guillaume", "Aurélie", "Antoine", "Julie", "Benoît", "Manon", "Olivier", "Léa", "Rémi", "Pauline"],
    "pt": ["Miguel", "Sofia", "Pedro", "Carolina", "André", "Rita", "Ricardo", "Joana", "Diogo", "Marta", "Bruno", "Filipa"],
}
LAST = {
    "en": ["Patel", "Hughes", "Murphy", "Kelly", "Robinson", "Wright", "Green", "Baker", "Hall", "Cooper", "Ward", "Foster"],
    "de": ["Richter", "Klein", "Wolf", "Neumann", "Schwarz", "Braun", "Hartmann", "Lange", "Krause", "Lehmann", "Köhler", "Vogel"],
    "es": ["Romero", "Navarro", "Torres", "Domínguez", "Vázquez", "Ramos", "Gil", "Serrano", "Blanco", "Molina", "Castro", "Ortega"],
    "fr": ["Lambert", "Bonnet", "Mercier", "Garnier", "Faure", "Roux", "Blanc", "Guérin", "Muller", "Perrin", "Morel", "Fournier"],
    "pt": ["Almeida", "Ribeiro", "Pinto", "Teixeira", "Moreira", "Correia", "Mendes", "Nunes", "Soares", "Vieira", "Lopes", "Marques"],
}


def name_parts(rng: Rng, lang: str) -> tuple[str, str]:
    first, last = rng.choice(FIRST[lang]), rng.choice(LAST[lang])
    if lang == "es" and rng.random() < 0.3:
        last += " " + rng.choice([x for x in LAST["es"] if x != last])
    if lang == "pt" and rng.random() < 0.25:
        last = rng.choice(["do Carmo", "da Cunha", "dos Reis"])
    return first, last


# How a name is written: casing and order. The template decides the position in the sentence.
def render_name(rng: Rng, first: str, last: str, style: str) -> str:
    if style == "lower":
        return f"{first} {last}".lower()
    if style == "caps":
        return f"{first} {last}".upper()
    if style == "inverted":
        return f"{last}, {first}"
    if style == "first_lower":
        return first.lower()
    return f"{first} {last}"


# --- e-mails ---------------------------------------------------------------------------------------

DOMAINS = {
    "en": ["gmail.com", "outlook.com", "yahoo.co.uk", "hotmail.com", "proton.me"],
    "de": ["web.de", "gmx.net", "posteo.de", "freenet.de", "gmx.ch"],
    "es": ["gmail.com", "hotmail.es", "outlook.es", "yahoo.com.mx"],
    "fr": ["orange.fr", "sfr.fr", "free.fr", "laposte.net", "skynet.be"],
    "pt": ["sapo.pt", "gmail.com", "outlook.pt", "bol.com.br", "terra.com.br"],
}


def email(rng: Rng, lang: str, first: str, last: str) -> str:
    f, l_ = fold(first).lower(), fold(last).lower().replace(" ", "")
    local = rng.choice([f"{f}.{l_}", f"{f[0]}.{l_}", f"{l_}{rng.randint(1, 99)}", f"{f}_{l_}", f"{f}-{l_}"])
    domain = rng.choice(DOMAINS[lang])
    host, _, tld = domain.rpartition(".")
    style = rng.choices(["plain", "caps", "paren", "bracket", "bracket_dot", "words", "spaced", "mailto"], weights=[2, 1, 3, 2, 3, 2, 1, 1])[0]
    if style == "plain":
        return f"{local}@{domain}"
    if style == "caps":
        return f"{local.title()}@{domain.upper()}"
    if style == "paren":
        return f"{local} (at) {domain}"
    if style == "bracket":
        return f"{local}[at]{domain}"
    if style == "bracket_dot":
        return f"{local} [at] {host.replace('.', ' [dot] ')} [dot] {tld}"
    if style == "words":
        return f"{local} at {host.replace('.', ' dot ')} dot {tld}"
    if style == "spaced":
        return f"{local} @ {domain}"
    return f"mailto:{local}@{domain}"


# --- postal addresses per country --------------------------------------------------------------------

def address(rng: Rng, lang: str) -> str:
    n = rng.randint(1, 240)
    if lang == "en":
        if rng.random() < 0.5:
            street = rng.choice(["Maple Avenue", "Oak Street", "Lakeview Drive", "Sunset Boulevard", "Pine Road", "Cedar Lane"])
            city, state = rng.choice([("Springfield", "IL"), ("Austin", "TX"), ("Portland", "OR"), ("Columbus", "OH"), ("Denver", "CO")])
            zipc = digits(rng, 5) if rng.random() < 0.7 else f"{digits(rng, 5)}-{digits(rng, 4)}"
            unit = rng.choice(["", f", Apt {rng.randint(1, 40)}", f" Unit {rng.randint(1, 9)}B"])
            return f"{n} {street}{unit}, {city}, {state} {zipc}"
        street = rng.choice(["Church Lane", "High Street", "Station Road", "Victoria Road", "Mill Lane", "Park Avenue"])
        city, out = rng.choice([("Leeds", "LS6"), ("Manchester", "M14"), ("London", "SW1A"), ("Bristol", "BS8"), ("York", "YO31")])
        pc = f"{out} {rng.randint(1, 9)}{upper(rng, 2, 'ABDEFGHJLNPQRSTUWXYZ')}"
        return rng.choice([f"{n} {street}, {city} {pc}", f"Flat {rng.randint(1, 12)}, {n} {street}, {city}, {pc}"])
    if lang == "de":
        street = rng.choice(["Hauptstraße", "Lindenweg", "Goethestr.", "Am Mühlbach", "Bahnhofstraße", "Schillerplatz", "Kirchgasse"])
        house = f"{n}{rng.choice(['', '', 'a', 'b'])}"
        kind = rng.random()
        if kind < 0.6:
            city = rng.choice(["Berlin", "München", "Köln", "Leipzig", "Freiburg im Breisgau", "Frankfurt am Main"])
            return f"{street} {house}, {digits(rng, 5)} {city}" if rng.random() < 0.7 else f"{street} {house}\n{digits(rng, 5)} {city}"
        if kind < 0.8:
            return f"{street} {house}, {rng.choice(['A-', ''])}{rng.randint(1010, 9990)} {rng.choice(['Wien', 'Graz', 'Linz'])}"
        return f"{street} {house}, {rng.choice(['CH-', ''])}{rng.randint(1000, 9658)} {rng.choice(['Zürich', 'Bern', 'Basel'])}"
    if lang == "es":
        street = rng.choice(["Calle Mayor", "C/ de Alcalá", "Avda. de la Constitución", "Calle del Pez", "Paseo de Gracia", "Plaza de España"])
        floor = rng.choice(["", f", {rng.randint(1, 9)}º {rng.choice(['A', 'B', 'izq.', 'dcha.'])}"])
        if rng.random() < 0.75:
            cp = f"{rng.choice(['28', '08', '41', '46', '48'])}{digits(rng, 3)}"
            city = rng.choice(["Madrid", "Barcelona", "Sevilla", "Valencia", "Bilbao"])
            return f"{street} {n}{floor}, {cp} {city}"
        return f"Calle {rng.choice(['Reforma', 'Insurgentes Sur', 'Juárez'])} {n}, Col. {rng.choice(['Roma Norte', 'Condesa', 'Centro'])}, C.P. {digits(rng, 5)}, CDMX"
    if lang == "fr":
        street = rng.choice(["rue des Lilas", "avenue Jean Jaurès", "boulevard Voltaire", "rue de la Paix", "impasse des Roses", "place du Marché"])
        bis = rng.choice(["", "", " bis", " ter"])
        if rng.random() < 0.75:
            cp = f"{rng.choice(['75', '69', '13', '31', '33'])}{digits(rng, 3)}"
            city = rng.choice(["Paris", "Lyon", "Marseille", "Toulouse", "Bordeaux"])
            return f"{n}{bis} {street}, {cp} {city}" if rng.random() < 0.7 else f"{n}{bis} {street}\n{cp} {city.upper()}"
        return f"{rng.choice(['Rue Neuve', 'Chaussée de Wavre', 'Avenue Louise'])} {n}, {rng.randint(1000, 1210)} {rng.choice(['Bruxelles', 'Ixelles'])}"
    street = rng.choice(["Rua das Flores", "Avenida da Liberdade", "Rua Augusta", "Travessa do Carmo", "Rua de Santa Catarina"])
    if rng.random() < 0.6:
        cp = f"{rng.choice(['1', '4', '3'])}{digits(rng, 3)}-{digits(rng, 3)}"
        city = rng.choice(["Lisboa", "Porto", "Coimbra", "Braga"])
        andar = rng.choice(["", f", {rng.randint(1, 8)}.º {rng.choice(['Esq.', 'Dto.'])}"])
        return f"{street}, {n}{andar}, {cp} {city}"
    cep = f"{digits(rng, 5)}-{digits(rng, 3)}"
    return f"{rng.choice(['Rua Augusta', 'Av. Paulista', 'Rua Oscar Freire'])}, {n}, apto {rng.randint(11, 99)}, São Paulo - SP, {rng.choice(['CEP ', ''])}{cep}"


# --- identity documents, with their real check digits -------------------------------------------------


def dni(rng: Rng) -> str:
    num = rng.randint(10000000, 99999999)
    return f"{num}{'TRWAGMYFPDXBNJZSQVHLCKE'[num % 23]}"


def nie(rng: Rng) -> str:
    lead = rng.choice("XYZ")
    num = rng.randint(1000000, 9999999)
    return f"{lead}{num:07d}{'TRWAGMYFPDXBNJZSQVHLCKE'[int(str('XYZ'.index(lead)) + f'{num:07d}') % 23]}"


def cpf(rng: Rng) -> str:
    base = [rng.randint(0, 9) for _ in range(9)]
    for k in (10, 11):
        s = sum(d * w for d, w in zip(base, range(k, 1, -1)))
        base.append(0 if s % 11 < 2 else 11 - s % 11)
    d = "".join(map(str, base))
    return rng.choice([f"{d[:3]}.{d[3:6]}.{d[6:9]}-{d[9:]}", d])


def nif_pt(rng: Rng) -> str:
    base = [rng.choice([1, 2, 2, 2])] + [rng.randint(0, 9) for _ in range(7)]
    s = sum(d * w for d, w in zip(base, range(9, 1, -1)))
    check = 11 - s % 11
    d = "".join(map(str, base)) + str(0 if check >= 10 else check)
    return rng.choice([d, f"{d[:3]} {d[3:6]} {d[6:]}"])


def nir(rng: Rng) -> str:
    body = f"{rng.choice('12')}{rng.randint(50, 99)}{rng.randint(1, 12):02d}{rng.choice(['75', '69', '13', '33'])}{rng.randint(1, 999):03d}{rng.randint(1, 999):03d}"
    key = 97 - int(body) % 97
    return rng.choice([f"{body[0]} {body[1:3]} {body[3:5]} {body[5:7]} {body[7:10]} {body[10:13]} {key:02d}", f"{body}{key:02d}"])


def steuer_id(rng: Rng) -> str:
    d = str(rng.randint(1, 9)) + digits(rng, 10)
    return rng.choice([f"{d[:2]} {d[2:5]} {d[5:8]} {d[8:]}", d])


def uk_nino(rng: Rng) -> str:
    p = upper(rng, 2, "ABCEGHJKLMNPRSTWXYZ")
    d = digits(rng, 6)
    return rng.choice([f"{p} {d[:2]} {d[2:4]} {d[4:]} {rng.choice('ABCD')}", f"{p}{d}{rng.choice('ABCD')}"])


def passport(rng: Rng, lang: str) -> str:
    de_alpha = "CFGHJKLMNPRTVWXYZ"
    kinds = {
        "en": [lambda: digits(rng, 9), lambda: str(rng.randint(1, 9)) + digits(rng, 8)],
        "de": [lambda: rng.choice("CFGHJK") + "".join(rng.choice(de_alpha + "0123456789") for _ in range(8))],
        "es": [lambda: upper(rng, 3) + digits(rng, 6)],
        "fr": [lambda: digits(rng, 2) + upper(rng, 2) + digits(rng, 5)],
        "pt": [lambda: rng.choice(["C", "P"]) + digits(rng, 6), lambda: upper(rng, 2) + digits(rng, 6)],
    }
    return rng.choice(kinds[lang])()


def national_id(rng: Rng, lang: str) -> str:
    options: dict[str, list[Callable[[], str]]] = {
        "en": [lambda: uk_nino(rng), lambda: f"{rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"],
        "de": [lambda: steuer_id(rng), lambda: rng.choice("LMNPRT") + "".join(rng.choice("CFGHJKLMNPRTVWXYZ0123456789") for _ in range(8))],
        "es": [lambda: dni(rng), lambda: nie(rng), lambda: (lambda d: f"{d[:8]}-{d[8:]}")(dni(rng))],
        "fr": [lambda: nir(rng)],
        "pt": [lambda: nif_pt(rng), lambda: cpf(rng), lambda: f"{digits(rng, 8)} {rng.randint(0, 9)} {upper(rng, 2)}{rng.randint(0, 9)}"],
    }
    return rng.choice(options[lang])()


MONTHS = {
    "en": ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"],
    "de": ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober", "November", "Dezember"],
    "es": ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre"],
    "fr": ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"],
    "pt": ["janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto", "setembro", "outubro", "novembro", "dezembro"],
}


def birth_date(rng: Rng, lang: str) -> str:
    y, m, d = rng.randint(1940, 2005), rng.randint(1, 12), rng.randint(1, 28)
    month = MONTHS[lang][m - 1]
    written = {
        "en": [f"{m:02d}/{d:02d}/{y}", f"{d} {month} {y}", f"{month} {d}, {y}", f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}"],
        "de": [f"{d:02d}.{m:02d}.{y}", f"{d}.{m}.{y}", f"{d}. {month} {y}"],
        "es": [f"{d:02d}/{m:02d}/{y}", f"{d} de {month} de {y}", f"{d:02d}-{m:02d}-{y}"],
        "fr": [f"{d:02d}/{m:02d}/{y}", f"{d} {month} {y}", f"{d:02d}.{m:02d}.{y}"],
        "pt": [f"{d:02d}/{m:02d}/{y}", f"{d} de {month} de {y}", f"{d:02d}-{m:02d}-{y}"],
    }
    return rng.choice(written[lang])


def password(rng: Rng) -> str:
    words = ["Sommer", "Summer", "Verano", "Soleil", "Praia", "Tiger", "Kaffee", "Dragon", "Blue", "Lisboa", "Hamburg"]
    return rng.choice(
        [
            f"{rng.choice(words)}{rng.randint(1980, 2025)}{rng.choice('!?#$%*')}",
            "".join(rng.choice(string.ascii_letters + string.digits + "!#%&*") for _ in range(rng.randint(9, 14))),
            f"{rng.choice(words).lower()}_{rng.choice(words).lower()}{rng.randint(1, 99)}",
            f"{rng.choice(words)}-{digits(rng, 4)}",
        ]
    )


def pin_code(rng: Rng) -> str:
    return rng.choice([digits(rng, 4), digits(rng, 6), f"{digits(rng, 3)} {digits(rng, 3)}", f"{digits(rng, 3)}-{digits(rng, 3)}", digits(rng, 8)])


# --- phones in local formats ---------------------------------------------------------------------------


def phone(rng: Rng, lang: str) -> str:
    opts: dict[str, list[Callable[[], str]]] = {
        "en": [
            lambda: f"01632 960{digits(rng, 3)}",
            lambda: f"0113 496 0{digits(rng, 3)}",
            lambda: f"07700 900 {digits(rng, 3)}",
            lambda: f"555-01{digits(rng, 2)}",
            lambda: f"1-800-555-01{digits(rng, 2)}",
            lambda: f"+1 (312) 555-01{digits(rng, 2)}",
            lambda: f"00 44 20 7946 0{digits(rng, 3)}",
        ],
        "de": [
            lambda: f"(030) {digits(rng, 3)} {digits(rng, 2)} {digits(rng, 2)}",
            lambda: f"089 / {rng.randint(20, 99)} {digits(rng, 2)} {digits(rng, 2)} {digits(rng, 2)}",
            lambda: f"0049 {rng.choice(['30', '40', '221'])} {rng.randint(2, 9)}{digits(rng, 6)}",
            lambda: f"0171-{rng.randint(1, 9)}{digits(rng, 6)}",
            lambda: f"+49 (0) 151 {digits(rng, 4)} {digits(rng, 4)}",
            lambda: f"0664 / {digits(rng, 3)} {digits(rng, 2)} {digits(rng, 2)}",
            lambda: f"+41 (0)44 {rng.randint(200, 999)} {digits(rng, 2)} {digits(rng, 2)}",
        ],
        "es": [
            lambda: f"91 {rng.randint(200, 999)} {digits(rng, 2)} {digits(rng, 2)}",
            lambda: f"6{digits(rng, 2)}-{digits(rng, 3)}-{digits(rng, 3)}",
            lambda: f"0034 6{digits(rng, 2)} {digits(rng, 3)} {digits(rng, 3)}",
            lambda: f"(+34) 9{rng.choice('1356')}{rng.randint(1, 9)} {digits(rng, 3)} {digits(rng, 3)}",
            lambda: f"55 {rng.randint(1000, 9999)} {digits(rng, 4)}",
        ],
        "fr": [
            lambda: f"0{rng.choice('1234567')} {digits(rng, 2)} {digits(rng, 2)} {digits(rng, 2)} {digits(rng, 2)}",
            lambda: f"0{rng.choice('67')}-{digits(rng, 2)}-{digits(rng, 2)}-{digits(rng, 2)}-{digits(rng, 2)}",
            lambda: f"0033 {rng.choice('67')} {digits(rng, 2)} {digits(rng, 2)} {digits(rng, 2)} {digits(rng, 2)}",
            lambda: f"+33 (0)1 {digits(rng, 2)} {digits(rng, 2)} {digits(rng, 2)} {digits(rng, 2)}",
            lambda: f"02/{rng.randint(200, 999)}.{digits(rng, 2)}.{digits(rng, 2)}",
        ],
        "pt": [
            lambda: f"21 {rng.randint(100, 999)} {digits(rng, 4)}",
            lambda: f"9{rng.choice('1236')}{rng.randint(1, 9)}-{digits(rng, 3)}-{digits(rng, 3)}",
            lambda: f"00351 9{rng.choice('1236')}{rng.randint(1, 9)} {digits(rng, 3)} {digits(rng, 3)}",
            lambda: f"({rng.choice(['11', '21', '31'])}) 3{digits(rng, 3)}-{digits(rng, 4)}",
            lambda: f"+55 {rng.choice(['11', '21'])} 9{digits(rng, 4)}-{digits(rng, 4)}",
            lambda: f"(0xx11) 9{digits(rng, 4)}-{digits(rng, 4)}",
        ],
    }
    return rng.choice(opts[lang])()


# --- IBANs and cards ------------------------------------------------------------------------------------

IBAN_LAYOUTS = {
    "DE": "18n", "AT": "16n", "CH": "5n12c", "GB": "4a14n", "IE": "4a14n", "ES": "20n", "FR": "10n11c2n",
    "BE": "12n", "LU": "3n13c", "PT": "21n", "IT": "1a10n12c", "NL": "4a10n", "BR": "23n1a1c", "PL": "24n",
}  # fmt: skip
IBAN_COUNTRIES = {"en": ["GB", "IE", "NL"], "de": ["DE", "AT", "CH", "PL"], "es": ["ES", "IT"], "fr": ["FR", "BE", "LU"], "pt": ["PT", "BR"]}


def iban(rng: Rng, lang: str) -> str:
    country = rng.choice(IBAN_COUNTRIES[lang])
    bban = ""
    for count, kind in re.findall(r"(\d+)([nac])", IBAN_LAYOUTS[country]):
        n = int(count)
        if kind == "a":
            bban += upper(rng, n)
        elif kind == "c":
            bban += "".join(rng.choice(string.digits + string.ascii_uppercase) for _ in range(n))
        else:
            bban += digits(rng, n)
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    compact = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    style = rng.choices(["compact", "paper", "lower", "dash", "odd"], weights=[3, 4, 1, 1, 1])[0]
    grouped = [compact[i : i + 4] for i in range(0, len(compact), 4)]
    if style == "compact":
        return compact
    if style == "paper":
        return " ".join(grouped)
    if style == "lower":
        return " ".join(grouped).lower() if rng.random() < 0.5 else compact.lower()
    if style == "dash":
        return "-".join(grouped)
    return f"{compact[:2]} {compact[2:4]} {compact[4:12]} {compact[12:]}"  # as read out from a bank letter


def luhn(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def card(rng: Rng) -> str:
    prefix, length, groups = rng.choice(
        [("4", 16, (4, 4, 4, 4)), ("5", 16, (4, 4, 4, 4)), ("2", 16, (4, 4, 4, 4)), ("37", 15, (4, 6, 5)), ("6011", 16, (4, 4, 4, 4)), ("35", 16, (4, 4, 4, 4)), ("6759", 19, (4, 4, 4, 4, 3))]
    )
    if prefix == "5":
        prefix = rng.choice(["51", "53", "55"])
    if prefix == "2":
        prefix = str(rng.randint(2221, 2720))
    number = luhn(prefix + digits(rng, length - len(prefix) - 1))
    parts, pos = [], 0
    for g in groups:
        parts.append(number[pos : pos + g])
        pos += g
    style = rng.choices(["space", "dash", "plain", "dot", "double"], weights=[4, 3, 2, 1, 1])[0]
    if style == "plain":
        return number
    if style == "double":
        return "  ".join(parts)
    return {"space": " ", "dash": "-", "dot": "."}[style].join(parts)


# --- business identifiers -------------------------------------------------------------------------------


def account_no(rng: Rng) -> str:
    return rng.choice([digits(rng, 10), f"{digits(rng, 4)} {digits(rng, 4)} {digits(rng, 2)}", f"{digits(rng, 3)}-{digits(rng, 6)}-{digits(rng, 1)}", f"KTO{digits(rng, 7)}"])


def customer_id(rng: Rng) -> str:
    return rng.choice([f"K{digits(rng, 6)}", f"C-{digits(rng, 7)}", f"{digits(rng, 8)}", f"CL{digits(rng, 2)}-{digits(rng, 5)}", f"KD-{digits(rng, 4)}-{digits(rng, 3)}"])


def order_id(rng: Rng) -> str:
    return rng.choice([f"{digits(rng, 3)}-{digits(rng, 7)}-{digits(rng, 7)}", f"#{digits(rng, 6)}", f"SO{digits(rng, 8)}", f"{upper(rng, 2)}{digits(rng, 9)}", f"2024{digits(rng, 6)}", f"WEB-{digits(rng, 5)}-{upper(rng, 2)}"])


def invoice_no(rng: Rng) -> str:
    return rng.choice([f"INV-{rng.randint(2022, 2025)}-{digits(rng, 5)}", f"RE{digits(rng, 8)}", f"F{rng.randint(2022, 2025)}/{digits(rng, 4)}", f"{digits(rng, 4)}/{rng.randint(22, 25)}", f"FT {rng.randint(2023, 2025)}A/{digits(rng, 4)}"])


def ip(rng: Rng) -> str:
    r = rng.random()
    if r < 0.2:
        return ":".join(f"{rng.randint(0, 0xFFFF):x}" for _ in range(8))
    if r < 0.35:
        return f"fe80::{rng.randint(1, 0xFFFF):x}:{rng.randint(1, 0xFFFF):x}"
    a = f"{rng.choice([31, 46, 79, 84, 93, 176, 188, 217])}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    return a + (f":{rng.choice([8080, 443, 3389, 51820])}" if rng.random() < 0.3 else "")


def url(rng: Rng, lang: str, user: str) -> str:
    token = "".join(rng.choice(string.ascii_letters + string.digits + "-_") for _ in range(rng.randint(16, 32)))
    host = rng.choice(["app.example-crm.com", "login.example.net", "files.example.org", "cloud.beispiel.de", "tienda.ejemplo.es", "compte.exemple.fr", "loja.exemplo.pt"])
    return rng.choice(
        [
            f"https://{host}/reset?token={token}",
            f"https://{host}/invite/{token}",
            f"https://{host}/dl?file=invoice.pdf&sig={token}",
            f"https://{host}/unsubscribe?email={user}&id={rng.randint(10000, 99999)}",
            f"{host}/s/{token}",
            f"https://{host}/verify#access_token={token}",
        ]
    )


def license_plate(rng: Rng, lang: str) -> str:
    opts: dict[str, list[Callable[[], str]]] = {
        "en": [lambda: f"{upper(rng, 2)}{rng.randint(51, 74)} {upper(rng, 3)}", lambda: f"{rng.randint(1, 9)}{upper(rng, 3)}{digits(rng, 3)}"],
        "de": [lambda: f"{rng.choice(['B', 'M', 'HH', 'K', 'F'])}-{upper(rng, 2)} {rng.randint(1, 9999)}", lambda: f"{rng.choice(['B', 'M', 'S'])} {upper(rng, 2)} {rng.randint(1, 999)}"],
        "es": [lambda: f"{digits(rng, 4)} {upper(rng, 3, 'BCDFGHJKLMNPRSTVWXYZ')}", lambda: f"{digits(rng, 4)}-{upper(rng, 3, 'BCDFGHJKLMNPRSTVWXYZ')}"],
        "fr": [lambda: f"{upper(rng, 2)}-{digits(rng, 3)}-{upper(rng, 2)}", lambda: f"{upper(rng, 2)} {digits(rng, 3)} {upper(rng, 2)}"],
        "pt": [lambda: f"{digits(rng, 2)}-{upper(rng, 2)}-{digits(rng, 2)}", lambda: f"{upper(rng, 3)}{rng.randint(0, 9)}{upper(rng, 1)}{digits(rng, 2)}", lambda: f"{upper(rng, 2)}-{digits(rng, 2)}-{upper(rng, 2)}"],
    }
    return rng.choice(opts[lang])()


# --- negatives: must survive ----------------------------------------------------------------------------

NEG_VALUES: dict[str, dict[str, list[str]]] = {
    "ERROR_CODE": {"*": ["E1234", "HTTP 502", "error 0x800f081f", "AADSTS50126", "ORA-00942", "exit code 137", "SMTP 550 5.1.1", "ERR_SSL_PROTOCOL_ERROR", "E-1103", "WH-0042", "status 429", "0xC0000005", "KB5034441", "CVE-2024-3094"]},
    "VERSION": {"*": ["v3.2.1", "build 22631.3155", "iOS 17.4.1", "Android 14", "6.1.0-rc2", "2024.03", "release 11.2", "FW 1.0.7.114"]},
    "PRODUCT": {"*": ["Galaxy S24", "AirPods Pro 2", "MacBook Air M2", "Jabra Evolve2 65", "Brother HL-L2350DW", "Tesla Model Y", "ThinkPad T14 Gen 3", "Microsoft Teams", "Google Drive", "Nintendo Switch OLED", "Dell XPS 13", "Fire TV Stick 4K"]},
    "ORG": {
        "en": ["Royal Mail", "Bank of America", "Amazon Prime", "British Gas"],
        "de": ["Deutsche Telekom", "Deutsche Bahn", "Sparkasse Köln", "DHL Express"],
        "es": ["Banco Santander", "Correos Express", "El Corte Inglés", "Movistar Plus"],
        "fr": ["La Poste", "Crédit Agricole", "Free Mobile", "Bouygues Telecom"],
        "pt": ["Caixa Geral", "Banco do Brasil", "Mercado Livre", "Vodafone Portugal"],
    },
    "DATE": {
        "en": ["on 12/03/2024", "since 3 March", "on Monday, 4 March 2024", "by 2024-04-30"],
        "de": ["am 15.03.2024", "seit dem 3. März", "bis 30.04.2024", "letzten Dienstag"],
        "es": ["el 15/03/2024", "desde el 3 de marzo", "hasta el 30/04/2024", "el lunes pasado"],
        "fr": ["le 15/03/2024", "depuis le 3 mars", "avant le 30/04/2024", "mardi dernier"],
        "pt": ["em 15/03/2024", "desde 3 de março", "até 30/04/2024", "na segunda-feira"],
    },
    "AMOUNT": {
        "en": ["$129.99", "£1,049.00", "USD 39"],
        "de": ["129,99 €", "1.049,00 EUR", "CHF 39.90"],
        "es": ["129,99 €", "1.049 euros", "$2,350 MXN"],
        "fr": ["129,99 €", "1 049,00 EUR", "39,90 CHF"],
        "pt": ["129,99 €", "R$ 1.049,00", "R$ 39,90"],
    },
    "PHRASE": {
        "en": ["order confirmation", "invoice attached", "password reset", "customer number field", "my account page", "PIN screen", "passport photo"],
        "de": ["Bestellbestätigung", "Rechnung im Anhang", "Passwort vergessen", "Kundennummer-Feld", "Mein Konto", "PIN-Eingabe"],
        "es": ["confirmación del pedido", "factura adjunta", "restablecer la contraseña", "mi cuenta", "número de cliente", "código PIN"],
        "fr": ["confirmation de commande", "facture jointe", "mot de passe oublié", "mon compte", "numéro client", "code PIN"],
        "pt": ["confirmação da encomenda", "fatura em anexo", "recuperar a senha", "minha conta", "número de cliente", "código PIN"],
    },
}

# --- templates ------------------------------------------------------------------------------------------
# {TYPE} plants an item of TYPE; {PERSON:style} plants a name written in that style; {NEG_KIND} a negative.

T: dict[str, dict[str, list[str]]] = {
    "en": {
        "open": ["Hello,", "Hi,", "Good morning,", "To whom it may concern,", "Hey support team,"],
        "close": ["Thanks!", "Regards", "Cheers", "Thank you in advance."],
        "PERSON": [
            "Yesterday I spoke to {PERSON:title} on the phone and he promised a callback.",
            "{PERSON:title} from our finance team set up the direct debit.",
            "my name is {PERSON:lower} and i cannot log in.",
            "Please add {PERSON:title} as a second admin on our plan.",
            "The parcel was signed for by {PERSON:caps} although nobody of that name works here.",
            "Account holder: {PERSON:inverted}",
            "this is {PERSON:lower}, the owner of the subscription.",
            "cc {PERSON:title} (our IT lead)",
            "The invoice is addressed to {PERSON:title} instead of our company.",
        ],
        "EMAIL_ADDRESS": ["Write to me at {EMAIL_ADDRESS} please.", "My e-mail is {EMAIL_ADDRESS}", "Send the invoice to {EMAIL_ADDRESS} instead.", "contact: {EMAIL_ADDRESS}"],
        "ADDRESS": ["Please ship the replacement to {ADDRESS}.", "My billing address is {ADDRESS}", "We moved to {ADDRESS} last month.", "Delivery address:\n{ADDRESS}"],
        "PASSPORT": ["For the identity check I uploaded my passport, number {PASSPORT}.", "Passport No: {PASSPORT}", "my passport number is {PASSPORT} and it expires next year."],
        "NATIONAL_ID": ["My National Insurance number is {NATIONAL_ID}.", "ID number: {NATIONAL_ID}", "The form rejects my national ID {NATIONAL_ID}."],
        "DATE_OF_BIRTH": ["DOB: {DATE_OF_BIRTH}", "I was born on {DATE_OF_BIRTH}, the form says I am under 18.", "Date of birth {DATE_OF_BIRTH} is shown wrong in my profile.", "birthday: {DATE_OF_BIRTH}"],
        "PASSWORD": ["My password is {PASSWORD} and it still says invalid.", 'I tried the password "{PASSWORD}" three times.', "login: shop-admin / pw: {PASSWORD}", "The new password you gave me ('{PASSWORD}') does not work."],
        "PIN_CODE": ["The one-time code {PIN_CODE} expired before I could type it.", "My PIN is {PIN_CODE}, can you reset it?", "verification code: {PIN_CODE}", "I got the OTP {PIN_CODE} twice."],
        "PHONE_NUMBER": ["Ring me on {PHONE_NUMBER} after 6.", "My number is {PHONE_NUMBER}.", "Call me at {PHONE_NUMBER} today.", "mobile {PHONE_NUMBER}"],
        "IBAN_CODE": ["Refund to {IBAN_CODE} please.", "my iban is {IBAN_CODE}", "Bank account: {IBAN_CODE}"],
        "CREDIT_CARD": ["Charged on {CREDIT_CARD} twice.", "Use my other card {CREDIT_CARD} for the renewal.", "CC# {CREDIT_CARD} exp 04/28", "visa {CREDIT_CARD}"],
        "ACCOUNT_NUMBER": ["Bank acct {ACCOUNT_NUMBER} was debited.", "Account no {ACCOUNT_NUMBER}", "my account number {ACCOUNT_NUMBER} is locked"],
        "CUSTOMER_ID": ["Customer number: {CUSTOMER_ID}", "My customer ID is {CUSTOMER_ID}.", "Client ref {CUSTOMER_ID}", "membership no. {CUSTOMER_ID}"],
        "ORDER_ID": ["Order {ORDER_ID} never arrived.", "order number {ORDER_ID}", "Re: your order {ORDER_ID}", "The purchase ({ORDER_ID}) was charged twice."],
        "INVOICE_NUMBER": ["Invoice {INVOICE_NUMBER} is wrong.", "invoice no. {INVOICE_NUMBER}", "Bill #{INVOICE_NUMBER} shows VAT twice."],
        "IP_ADDRESS": ["My router's public address is {IP_ADDRESS}.", "Connections from {IP_ADDRESS} are refused.", "host {IP_ADDRESS} timed out"],
        "URL": ["The reset link {URL} says expired.", "Link: {URL}", "I clicked {URL} and got an error."],
        "LICENSE_PLATE": ["The parking charge is for my car, registration {LICENSE_PLATE}.", "Vehicle reg: {LICENSE_PLATE}", "number plate {LICENSE_PLATE}"],
        "neg": ["Since {NEG_VERSION} I get {NEG_ERROR_CODE}.", "My {NEG_PRODUCT} shows {NEG_ERROR_CODE} {NEG_DATE}.", "I paid {NEG_AMOUNT} but the {NEG_PHRASE} never came.", "{NEG_ORG} says it is your fault.", "Where is the {NEG_PHRASE}?"],
    },
    "de": {
        "open": ["Hallo,", "Guten Morgen,", "Sehr geehrte Damen und Herren,", "Moin,"],
        "close": ["Danke!", "Gruß", "Viele Grüße", "Danke im Voraus."],
        "PERSON": [
            "Gestern habe ich mit {PERSON:title} telefoniert, er wollte zurückrufen.",
            "{PERSON:title} aus unserer Buchhaltung hat das Lastschriftmandat erteilt.",
            "ich bin {PERSON:lower} und komme nicht mehr in mein Konto.",
            "Bitte tragen Sie {PERSON:title} als zweiten Administrator ein.",
            "Das Paket hat {PERSON:caps} angenommen, die hier niemand kennt.",
            "Kontoinhaber: {PERSON:inverted}",
            "hier schreibt {PERSON:lower}, Inhaberin des Vertrags.",
            "Die Rechnung ist an {PERSON:title} adressiert statt an die Firma.",
        ],
        "EMAIL_ADDRESS": ["Schreiben Sie mir an {EMAIL_ADDRESS}.", "Meine Mailadresse: {EMAIL_ADDRESS}", "Rechnung bitte an {EMAIL_ADDRESS} schicken."],
        "ADDRESS": ["Bitte senden Sie das Ersatzgerät an {ADDRESS}.", "Meine Rechnungsadresse ist {ADDRESS}", "Wir sind umgezogen, neue Anschrift: {ADDRESS}", "Lieferadresse:\n{ADDRESS}"],
        "PASSPORT": ["Für die Identprüfung habe ich meinen Reisepass hochgeladen, Nummer {PASSPORT}.", "Passnummer: {PASSPORT}", "Reisepass-Nr. {PASSPORT}"],
        "NATIONAL_ID": ["Meine Steuer-ID ist {NATIONAL_ID}.", "Personalausweisnummer: {NATIONAL_ID}", "Ausweis-Nr. {NATIONAL_ID} wird nicht akzeptiert."],
        "DATE_OF_BIRTH": ["Ich bin am {DATE_OF_BIRTH} geboren.", "Geburtsdatum: {DATE_OF_BIRTH}", "geb. {DATE_OF_BIRTH}", "geboren am {DATE_OF_BIRTH} in Hamburg"],
        "PASSWORD": ["Mein Passwort ist {PASSWORD}, trotzdem kommt ungültig.", "Ich habe das Kennwort „{PASSWORD}“ dreimal probiert.", "Benutzer: buero2 / PW: {PASSWORD}", 'Das neue Passwort "{PASSWORD}" geht nicht.'],
        "PIN_CODE": ["Der Bestätigungscode {PIN_CODE} war schon abgelaufen.", "Meine PIN lautet {PIN_CODE}.", "TAN: {PIN_CODE}", "Einmalcode {PIN_CODE} kam doppelt."],
        "PHONE_NUMBER": ["Rufen Sie mich an: {PHONE_NUMBER}", "Meine Nummer ist {PHONE_NUMBER}.", "erreichbar unter {PHONE_NUMBER}", "Fax {PHONE_NUMBER}"],
        "IBAN_CODE": ["Bitte auf {IBAN_CODE} erstatten.", "meine iban lautet {IBAN_CODE}", "Bankverbindung {IBAN_CODE}"],
        "CREDIT_CARD": ["Abgebucht von {CREDIT_CARD} zweimal.", "Bitte die andere Karte {CREDIT_CARD} nehmen.", "Visa {CREDIT_CARD} gültig bis 04/28"],
        "ACCOUNT_NUMBER": ["Girokonto {ACCOUNT_NUMBER} wurde belastet.", "Kto.-Nr. {ACCOUNT_NUMBER}", "mein Konto {ACCOUNT_NUMBER} ist gesperrt"],
        "CUSTOMER_ID": ["Kundennummer: {CUSTOMER_ID}", "Meine Kunden-Nr. ist {CUSTOMER_ID}.", "Mitgliedsnummer {CUSTOMER_ID}", "Vertragsnummer {CUSTOMER_ID}"],
        "ORDER_ID": ["Bestellung {ORDER_ID} kam nie an.", "Bestell-Nr. {ORDER_ID}", "Auftrag {ORDER_ID} wurde doppelt berechnet."],
        "INVOICE_NUMBER": ["Rechnung {INVOICE_NUMBER} ist falsch.", "Rechnungsnummer {INVOICE_NUMBER}", "Rechnungs-Nr.: {INVOICE_NUMBER}"],
        "IP_ADDRESS": ["Die öffentliche Adresse meines Routers ist {IP_ADDRESS}.", "Verbindungen von {IP_ADDRESS} werden abgelehnt."],
        "URL": ["Der Link {URL} ist abgelaufen.", "Link: {URL}"],
        "LICENSE_PLATE": ["Das Knöllchen betrifft mein Auto mit dem Kennzeichen {LICENSE_PLATE}.", "Kfz-Kennzeichen: {LICENSE_PLATE}"],
        "neg": ["Seit {NEG_VERSION} kommt {NEG_ERROR_CODE}.", "Mein {NEG_PRODUCT} zeigt {NEG_ERROR_CODE} {NEG_DATE}.", "Ich habe {NEG_AMOUNT} bezahlt, aber keine {NEG_PHRASE}.", "{NEG_ORG} sagt, Sie sind schuld.", "Wo finde ich {NEG_PHRASE}?"],
    },
    "es": {
        "open": ["Hola,", "Buenas,", "Buenos días,", "A quien corresponda:"],
        "close": ["Gracias.", "Saludos", "Un saludo."],
        "PERSON": [
            "Ayer hablé con {PERSON:title} por teléfono y me prometió una llamada.",
            "{PERSON:title} de contabilidad dio de alta la domiciliación.",
            "me llamo {PERSON:lower} y no puedo entrar.",
            "Por favor, añadan a {PERSON:title} como segundo administrador.",
            "El paquete lo recogió {PERSON:caps} y aquí no trabaja nadie con ese nombre.",
            "Titular: {PERSON:inverted}",
            "soy {PERSON:lower}, la titular del contrato.",
            "La factura está a nombre de {PERSON:title} en vez de la empresa.",
        ],
        "EMAIL_ADDRESS": ["Escríbanme a {EMAIL_ADDRESS}.", "Mi correo: {EMAIL_ADDRESS}", "Manden la factura a {EMAIL_ADDRESS}."],
        "ADDRESS": ["Envíen el repuesto a {ADDRESS}.", "Mi dirección de facturación es {ADDRESS}", "Nos mudamos a {ADDRESS} el mes pasado.", "Dirección de entrega:\n{ADDRESS}"],
        "PASSPORT": ["Para la verificación subí mi pasaporte, número {PASSPORT}.", "Pasaporte nº {PASSPORT}", "n.º de pasaporte: {PASSPORT}"],
        "NATIONAL_ID": ["Mi DNI es {NATIONAL_ID}.", "NIE: {NATIONAL_ID}", "El formulario no acepta mi documento {NATIONAL_ID}.", "DNI/NIF {NATIONAL_ID}"],
        "DATE_OF_BIRTH": ["Nací el {DATE_OF_BIRTH}.", "Fecha de nacimiento: {DATE_OF_BIRTH}", "nacida el {DATE_OF_BIRTH} en Sevilla", "F. nac. {DATE_OF_BIRTH}"],
        "PASSWORD": ["Mi contraseña es {PASSWORD} y sigue diciendo inválida.", "Probé la clave «{PASSWORD}» tres veces.", "usuario: tienda01 / contraseña: {PASSWORD}", 'La nueva contraseña "{PASSWORD}" no funciona.'],
        "PIN_CODE": ["El código de verificación {PIN_CODE} caducó.", "Mi PIN es {PIN_CODE}.", "código: {PIN_CODE}", "Me llegó el código SMS {PIN_CODE} dos veces."],
        "PHONE_NUMBER": ["Llámenme al {PHONE_NUMBER}.", "Mi número es {PHONE_NUMBER}.", "tel. {PHONE_NUMBER}", "WhatsApp {PHONE_NUMBER}"],
        "IBAN_CODE": ["Devuelvan el dinero a {IBAN_CODE}.", "mi iban es {IBAN_CODE}", "Cuenta bancaria: {IBAN_CODE}"],
        "CREDIT_CARD": ["Cobrado en {CREDIT_CARD} dos veces.", "Usen mi otra tarjeta {CREDIT_CARD}.", "Visa {CREDIT_CARD} cad. 04/28"],
        "ACCOUNT_NUMBER": ["Se cargó en la cuenta {ACCOUNT_NUMBER}.", "Nº de cuenta {ACCOUNT_NUMBER}", "mi cuenta {ACCOUNT_NUMBER} está bloqueada"],
        "CUSTOMER_ID": ["Número de cliente: {CUSTOMER_ID}", "Mi nº de cliente es {CUSTOMER_ID}.", "Nº de socio {CUSTOMER_ID}", "Contrato {CUSTOMER_ID}"],
        "ORDER_ID": ["El pedido {ORDER_ID} nunca llegó.", "Nº pedido {ORDER_ID}", "La compra ({ORDER_ID}) se cobró dos veces."],
        "INVOICE_NUMBER": ["La factura {INVOICE_NUMBER} está mal.", "Factura nº {INVOICE_NUMBER}", "Nº de factura: {INVOICE_NUMBER}"],
        "IP_ADDRESS": ["La IP pública de mi router es {IP_ADDRESS}.", "Se rechazan las conexiones desde {IP_ADDRESS}."],
        "URL": ["El enlace {URL} está caducado.", "Enlace: {URL}"],
        "LICENSE_PLATE": ["La multa es de mi coche, matrícula {LICENSE_PLATE}.", "Matrícula: {LICENSE_PLATE}"],
        "neg": ["Desde la {NEG_VERSION} sale {NEG_ERROR_CODE}.", "Mi {NEG_PRODUCT} muestra {NEG_ERROR_CODE} {NEG_DATE}.", "Pagué {NEG_AMOUNT} pero no llegó la {NEG_PHRASE}.", "{NEG_ORG} dice que es culpa vuestra.", "¿Dónde está {NEG_PHRASE}?"],
    },
    "fr": {
        "open": ["Bonjour,", "Bonsoir,", "Madame, Monsieur,", "Salut,"],
        "close": ["Merci.", "Cordialement", "Bonne journée"],
        "PERSON": [
            "Hier j'ai eu {PERSON:title} au téléphone, il devait me rappeler.",
            "{PERSON:title} de la comptabilité a signé le mandat de prélèvement.",
            "je m'appelle {PERSON:lower} et je ne peux plus me connecter.",
            "Merci d'ajouter {PERSON:title} comme deuxième administrateur.",
            "Le colis a été remis à {PERSON:caps} que personne ne connaît ici.",
            "Titulaire : {PERSON:inverted}",
            "c'est {PERSON:lower}, la titulaire du contrat.",
            "La facture est au nom de {PERSON:title} au lieu de la société.",
        ],
        "EMAIL_ADDRESS": ["Écrivez-moi à {EMAIL_ADDRESS}.", "Mon mail : {EMAIL_ADDRESS}", "Envoyez la facture à {EMAIL_ADDRESS}."],
        "ADDRESS": ["Merci d'envoyer l'appareil à {ADDRESS}.", "Mon adresse de facturation est {ADDRESS}", "Nous avons déménagé au {ADDRESS}.", "Adresse de livraison :\n{ADDRESS}"],
        "PASSPORT": ["Pour la vérification j'ai envoyé mon passeport, numéro {PASSPORT}.", "N° de passeport : {PASSPORT}", "passeport {PASSPORT}"],
        "NATIONAL_ID": ["Mon numéro de sécurité sociale est {NATIONAL_ID}.", "NIR : {NATIONAL_ID}", "N° de sécu {NATIONAL_ID}"],
        "DATE_OF_BIRTH": ["Je suis né le {DATE_OF_BIRTH}.", "Date de naissance : {DATE_OF_BIRTH}", "née le {DATE_OF_BIRTH} à Lyon", "date de naiss. {DATE_OF_BIRTH}"],
        "PASSWORD": ["Mon mot de passe est {PASSWORD} et il est refusé.", "J'ai essayé le mot de passe « {PASSWORD} » trois fois.", "identifiant : compta75 / mdp : {PASSWORD}", 'Le nouveau mot de passe "{PASSWORD}" ne marche pas.'],
        "PIN_CODE": ["Le code de vérification {PIN_CODE} a expiré.", "Mon code PIN est {PIN_CODE}.", "code reçu par SMS : {PIN_CODE}", "Code à usage unique {PIN_CODE} reçu deux fois."],
        "PHONE_NUMBER": ["Rappelez-moi au {PHONE_NUMBER}.", "Mon numéro : {PHONE_NUMBER}", "joignable au {PHONE_NUMBER}", "portable {PHONE_NUMBER}"],
        "IBAN_CODE": ["Remboursez sur {IBAN_CODE}.", "mon iban : {IBAN_CODE}", "RIB : {IBAN_CODE}"],
        "CREDIT_CARD": ["Débité sur {CREDIT_CARD} deux fois.", "Utilisez mon autre carte {CREDIT_CARD}.", "CB {CREDIT_CARD} exp. 04/28"],
        "ACCOUNT_NUMBER": ["Le compte {ACCOUNT_NUMBER} a été débité.", "N° de compte {ACCOUNT_NUMBER}", "mon compte {ACCOUNT_NUMBER} est bloqué"],
        "CUSTOMER_ID": ["Numéro client : {CUSTOMER_ID}", "Ma réf. client est {CUSTOMER_ID}.", "N° d'adhérent {CUSTOMER_ID}", "Contrat n° {CUSTOMER_ID}"],
        "ORDER_ID": ["La commande {ORDER_ID} n'est jamais arrivée.", "N° de commande {ORDER_ID}", "L'achat ({ORDER_ID}) a été facturé deux fois."],
        "INVOICE_NUMBER": ["La facture {INVOICE_NUMBER} est fausse.", "Facture n° {INVOICE_NUMBER}", "N° de facture : {INVOICE_NUMBER}"],
        "IP_ADDRESS": ["L'adresse publique de ma box est {IP_ADDRESS}.", "Les connexions depuis {IP_ADDRESS} sont refusées."],
        "URL": ["Le lien {URL} a expiré.", "Lien : {URL}"],
        "LICENSE_PLATE": ["L'amende concerne ma voiture immatriculée {LICENSE_PLATE}.", "Plaque : {LICENSE_PLATE}"],
        "neg": ["Depuis la {NEG_VERSION} j'ai {NEG_ERROR_CODE}.", "Mon {NEG_PRODUCT} affiche {NEG_ERROR_CODE} {NEG_DATE}.", "J'ai payé {NEG_AMOUNT} mais pas de {NEG_PHRASE}.", "{NEG_ORG} dit que c'est votre faute.", "Où est {NEG_PHRASE} ?"],
    },
    "pt": {
        "open": ["Olá,", "Bom dia,", "Boa tarde,", "Exmos. Senhores,"],
        "close": ["Obrigado.", "Cumprimentos", "Abraço"],
        "PERSON": [
            "Ontem falei com {PERSON:title} ao telefone e ele prometeu ligar de volta.",
            "{PERSON:title} da contabilidade autorizou o débito direto.",
            "chamo-me {PERSON:lower} e não consigo entrar.",
            "Por favor adicionem {PERSON:title} como segundo administrador.",
            "A encomenda foi recebida por {PERSON:caps}, que ninguém conhece aqui.",
            "Titular: {PERSON:inverted}",
            "sou a {PERSON:lower}, titular do contrato.",
            "A fatura está em nome de {PERSON:title} em vez da empresa.",
        ],
        "EMAIL_ADDRESS": ["Escrevam-me para {EMAIL_ADDRESS}.", "O meu email: {EMAIL_ADDRESS}", "Enviem a fatura para {EMAIL_ADDRESS}."],
        "ADDRESS": ["Enviem a peça para {ADDRESS}.", "A minha morada de faturação é {ADDRESS}", "Mudámos para {ADDRESS} no mês passado.", "Endereço de entrega:\n{ADDRESS}"],
        "PASSPORT": ["Para a verificação enviei o meu passaporte, número {PASSPORT}.", "Passaporte n.º {PASSPORT}", "nº do passaporte: {PASSPORT}"],
        "NATIONAL_ID": ["O meu NIF é {NATIONAL_ID}.", "CPF: {NATIONAL_ID}", "Cartão de Cidadão {NATIONAL_ID}", "contribuinte n.º {NATIONAL_ID}"],
        "DATE_OF_BIRTH": ["Nasci em {DATE_OF_BIRTH}.", "Data de nascimento: {DATE_OF_BIRTH}", "nascida a {DATE_OF_BIRTH} no Porto", "D.N. {DATE_OF_BIRTH}"],
        "PASSWORD": ["A minha senha é {PASSWORD} e diz inválida.", "Tentei a palavra-passe «{PASSWORD}» três vezes.", "utilizador: loja_norte / senha: {PASSWORD}", 'A nova password "{PASSWORD}" não funciona.'],
        "PIN_CODE": ["O código de verificação {PIN_CODE} expirou.", "O meu PIN é {PIN_CODE}.", "código SMS: {PIN_CODE}", "Recebi o código {PIN_CODE} duas vezes."],
        "PHONE_NUMBER": ["Liguem-me para o {PHONE_NUMBER}.", "O meu número é {PHONE_NUMBER}.", "tlm {PHONE_NUMBER}", "WhatsApp {PHONE_NUMBER}"],
        "IBAN_CODE": ["Reembolsem para {IBAN_CODE}.", "o meu iban é {IBAN_CODE}", "Conta bancária: {IBAN_CODE}"],
        "CREDIT_CARD": ["Cobrado no {CREDIT_CARD} duas vezes.", "Usem o meu outro cartão {CREDIT_CARD}.", "Visa {CREDIT_CARD} val. 04/28"],
        "ACCOUNT_NUMBER": ["Foi debitado da conta {ACCOUNT_NUMBER}.", "N.º de conta {ACCOUNT_NUMBER}", "a minha conta {ACCOUNT_NUMBER} está bloqueada"],
        "CUSTOMER_ID": ["Número de cliente: {CUSTOMER_ID}", "O meu n.º de cliente é {CUSTOMER_ID}.", "Nº de sócio {CUSTOMER_ID}", "Contrato {CUSTOMER_ID}"],
        "ORDER_ID": ["A encomenda {ORDER_ID} nunca chegou.", "Nº do pedido {ORDER_ID}", "A compra ({ORDER_ID}) foi cobrada duas vezes."],
        "INVOICE_NUMBER": ["A fatura {INVOICE_NUMBER} está errada.", "Fatura n.º {INVOICE_NUMBER}", "Nº da fatura: {INVOICE_NUMBER}"],
        "IP_ADDRESS": ["O IP público do meu router é {IP_ADDRESS}.", "As ligações de {IP_ADDRESS} são recusadas."],
        "URL": ["O link {URL} expirou.", "Link: {URL}"],
        "LICENSE_PLATE": ["A multa é do meu carro, matrícula {LICENSE_PLATE}.", "Placa: {LICENSE_PLATE}"],
        "neg": ["Desde a {NEG_VERSION} aparece {NEG_ERROR_CODE}.", "O meu {NEG_PRODUCT} mostra {NEG_ERROR_CODE} {NEG_DATE}.", "Paguei {NEG_AMOUNT} mas não recebi a {NEG_PHRASE}.", "A {NEG_ORG} diz que a culpa é vossa.", "Onde está a {NEG_PHRASE}?"],
    },
}

SLOT = re.compile(r"\{([A-Z_]+)(?::([a-z_]+))?\}")


@dataclass
class Ticket:
    rng: Rng
    lang: str
    parts: list[str] = field(default_factory=list)
    items: list[dict[str, object]] = field(default_factory=list)
    negatives: list[dict[str, object]] = field(default_factory=list)

    @property
    def length(self) -> int:
        return sum(len(p) for p in self.parts)

    def _value(self, slot: str, style: str | None) -> tuple[str, str, bool]:
        rng, lang = self.rng, self.lang
        if slot.startswith("NEG_"):
            kind = slot[4:]
            table = NEG_VALUES[kind]
            return kind, rng.choice(table.get(lang, table.get("*", []))), True
        first, last = name_parts(rng, lang)
        makers: dict[str, Callable[[], str]] = {
            "PERSON": lambda: render_name(rng, first, last, style or "title"),
            "EMAIL_ADDRESS": lambda: email(rng, lang, first, last),
            "ADDRESS": lambda: address(rng, lang),
            "PASSPORT": lambda: passport(rng, lang),
            "NATIONAL_ID": lambda: national_id(rng, lang),
            "DATE_OF_BIRTH": lambda: birth_date(rng, lang),
            "PASSWORD": lambda: password(rng),
            "PIN_CODE": lambda: pin_code(rng),
            "PHONE_NUMBER": lambda: phone(rng, lang),
            "IBAN_CODE": lambda: iban(rng, lang),
            "CREDIT_CARD": lambda: card(rng),
            "ACCOUNT_NUMBER": lambda: account_no(rng),
            "CUSTOMER_ID": lambda: customer_id(rng),
            "ORDER_ID": lambda: order_id(rng),
            "INVOICE_NUMBER": lambda: invoice_no(rng),
            "IP_ADDRESS": lambda: ip(rng),
            "URL": lambda: url(rng, lang, f"{fold(first).lower()}.{fold(last).lower().replace(' ', '')}%40{rng.choice(DOMAINS[lang])}"),
            "LICENSE_PLATE": lambda: license_plate(rng, lang),
        }
        return slot, makers[slot](), False

    def add(self, template: str) -> None:
        pos = 0
        for m in SLOT.finditer(template):
            self.parts.append(template[pos : m.start()])
            kind, value, negative = self._value(m.group(1), m.group(2))
            start = self.length
            self.parts.append(value)
            (self.negatives if negative else self.items).append({"type": kind, "value": value, "start": start, "end": start + len(value)})
            pos = m.end()
        self.parts.append(template[pos:])

    def text(self) -> str:
        return "".join(self.parts)


def build_ticket(rng: Rng, lang: str, types: list[str]) -> Ticket:
    t = T[lang]
    ticket = Ticket(rng, lang)
    body = [rng.choice(t[kind]) for kind in types] + [rng.choice(t["neg"]) for _ in range(rng.choice([1, 2, 2]))]
    rng.shuffle(body)
    # Sentences run on in a paragraph or stand on their own lines, as in pasted forms.
    joiner = rng.choice([" ", " ", "\n"])
    lines = [rng.choice(t["open"]), joiner.join(body), rng.choice(t["close"])]
    for i, line in enumerate(lines):
        ticket.add(line + ("\n\n" if i < len(lines) - 1 else ""))
    return ticket


def well_formed(ticket: Ticket) -> bool:
    """Each planted value occurs exactly as often as planted and no negative overlaps PII, so
    "the value no longer appears" is a fair test; a sentence-initial lower-case name is
    capitalised by nobody here, so the template casing stands."""
    text = ticket.text()
    values = [str(it["value"]) for it in ticket.items]
    if any(text.count(v) != values.count(v) for v in values):
        return False
    for neg in ticket.negatives:
        v = str(neg["value"])
        if text.count(v) != sum(1 for n in ticket.negatives if n["value"] == v):
            return False
        if any(v in x or x in v for x in values):
            return False
    return True


def build(per_language: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for lang in LANGUAGES:
        cycle = list(PII_TYPES)
        rng.shuffle(cycle)
        k = 0
        for i in range(per_language):
            types = []
            for _ in range(rng.choice([2, 3, 3, 4])):
                types.append(cycle[k % len(cycle)])
                k += 1
            types = list(dict.fromkeys(types))
            while True:
                ticket = build_ticket(rng, lang, types)
                if well_formed(ticket):
                    break
            rows.append({"id": f"ho-{lang}-{i:03d}", "language": lang, "text": ticket.text(), "items": ticket.items, "negatives": ticket.negatives})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "holdout_formats.jsonl")
    ap.add_argument("--per-language", type=int, default=36)
    ap.add_argument("--seed", type=int, default=7117)
    args = ap.parse_args()
    rows = build(args.per_language, args.seed)
    with open(args.out, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    per_type: dict[str, int] = {}
    for row in rows:
        for it in row["items"]:  # type: ignore[attr-defined]
            per_type[it["type"]] = per_type.get(it["type"], 0) + 1
    n_neg = sum(len(row["negatives"]) for row in rows)  # type: ignore[arg-type]
    print(f"wrote {len(rows)} texts, {sum(per_type.values())} items, {n_neg} negatives to {args.out}: {dict(sorted(per_type.items()))}", file=sys.stderr)


if __name__ == "__main__":
    main()
