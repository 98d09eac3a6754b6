"""Recognisers that tickets need and Presidio's pattern set lacks or gets wrong for en/de/es/fr/pt.

All of them are pure regex/checksum code (no model): they run under the same single analysis
language as Presidio's own recognisers, because a ticket's language is not known in advance.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import regex
import tldextract
from presidio_analyzer import EntityRecognizer, LocalRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import EmailRecognizer, IpRecognizer, PhoneRecognizer, UrlRecognizer

from server.privacy.cards import find_card_numbers


def _result(recognizer: EntityRecognizer, entity: str, start: int, end: int, score: float) -> RecognizerResult:
    return RecognizerResult(
        entity_type=entity,
        start=start,
        end=end,
        score=score,
        recognition_metadata={
            RecognizerResult.RECOGNIZER_NAME_KEY: str(recognizer.name),  # type: ignore[has-type]  # presidio sets it in __init__
            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: recognizer.id,
        },
    )


class CardNumberRecognizer(LocalRecognizer):
    """Any Luhn-valid 13-19 digit number, in any grouping.

    Presidio's CreditCardRecognizer only knows 4-4-4-4-like groupings of up to 17 digits and misses
    Mastercard's 2-series, 19-digit Maestro/UnionPay numbers and odd spacing; this one is the exact
    mirror of `assert_safe`, so whatever the safety net would flag is redacted first.
    """

    # IIN ranges of the networks seen in Europe and the Americas: a Luhn-valid number that also
    # starts like a real card is scored as certain, any other Luhn-valid number as likely.
    _BRAND_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[0689]|35|6|50|5[6-9])")

    def __init__(self, supported_language: str):
        super().__init__(
            supported_entities=["CREDIT_CARD"], supported_language=supported_language, name="CardNumberRecognizer"
        )

    def load(self) -> None:
        pass

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        return [
            _result(self, "CREDIT_CARD", c.start, c.end, 1.0 if self._BRAND_PREFIX.match(c.digits) else 0.8)
            for c in find_card_numbers(text)
        ]


# Total IBAN length per country (ISO 13616 registry). The mod-97 check does the real work; the
# length tells where an IBAN ends when it is followed by more letters or digits.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_valid(compact: str) -> bool:
    """ISO 7064 mod 97-10 over an IBAN without separators."""
    s = (compact[4:] + compact[:4]).upper()
    try:
        return int("".join(str(int(ch, 36)) for ch in s)) % 97 == 1
    except ValueError:
        return False


class LenientIbanRecognizer(LocalRecognizer):
    """IBANs as people actually type them: any case, grouped by 4 or not, "DE 89 ..." included.

    Presidio's IbanRecognizer wants upper case and strict groups of four; this one reads
    alphanumerics through single spaces/dashes and stops at the country's IBAN length, accepting
    only a mod-97-valid result.
    """

    _START = regex.compile(r"(?<![\p{L}\p{N}])([A-Za-z]{2})[ ]?(\d{2})(?=[ \-]?[A-Za-z0-9])")
    _BODY = regex.compile(r"[ \-]?([A-Za-z0-9])")

    def __init__(self, supported_language: str):
        super().__init__(
            supported_entities=["IBAN_CODE"], supported_language=supported_language, name="LenientIbanRecognizer"
        )

    def load(self) -> None:
        pass

    def _match_at(self, text: str, m: regex.Match[str]) -> int | None:
        country = m.group(1).upper()
        length = IBAN_LENGTHS.get(country)
        if length is None:
            return None
        compact = country + m.group(2)
        pos = m.end()
        while len(compact) < length:
            body = self._BODY.match(text, pos)
            if body is None:
                return None
            compact += body.group(1)
            pos = body.end()
        if pos < len(text) and text[pos].isalnum():
            return None  # runs on into a longer token: not this IBAN
        return pos if iban_valid(compact) else None

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results = []
        for m in self._START.finditer(text):
            end = self._match_at(text, m)
            if end is not None:
                results.append(_result(self, "IBAN_CODE", m.start(), end, 1.0))
        return results


class GroupPatternRecognizer(LocalRecognizer):
    """A configured `entity -> regex`: the value is group 1 when the regex has groups, else the match.

    Presidio's PatternRecognizer always reports the whole match, which would swallow the label
    ("order #A-12345" must become "order #<ORDER_ID_1>", not "<ORDER_ID_1>").
    """

    SCORE = 0.85

    def __init__(self, entity: str, pattern: str, supported_language: str):
        self._regex = re.compile(pattern)
        super().__init__(
            supported_entities=[entity], supported_language=supported_language, name=f"ConfigPattern_{entity}"
        )

    def load(self) -> None:
        pass

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results = []
        group = 1 if self._regex.groups else 0
        for m in self._regex.finditer(text):
            start, end = m.span(group)
            if start >= 0 and end > start:
                results.append(_result(self, self.supported_entities[0], start, end, self.SCORE))
        return results


# --- phone numbers -----------------------------------------------------------------------------

PHONE_CONTEXT = [
    "phone", "telephone", "tel", "mobile", "cell", "call", "whatsapp", "fax",
    "telefon", "telefonnummer", "handy", "mobil", "rufnummer", "rückruf", "anrufen",
    "teléfono", "telefono", "móvil", "movil", "celular", "llamar",
    "téléphone", "portable", "appeler", "joindre",
    "telefone", "telemóvel", "telemovel", "contacto", "contato", "ligar",
]  # fmt: skip

# Regions whose national formats (no +country prefix) tickets in en/de/es/fr/pt use; numbers
# written with a +prefix are found whatever the region.
PHONE_REGIONS = ("US", "GB", "IE", "DE", "AT", "CH", "FR", "BE", "ES", "PT", "BR", "MX")


class IntlPhoneRecognizer(PatternRecognizer):
    """Formats python-phonenumbers rejects as not-a-valid-number but people write anyway:
    +country-code numbers with any grouping and North-American (555) 123-4567 / 555-123-4567."""

    PATTERNS = [
        Pattern("intl +CC", r"(?<![\w+])\+\d{1,3}(?:[ .\-/]?(?:\(0\)|\(\d{1,4}\)|\d{1,5})){2,7}(?![\w])", 0.6),
        Pattern("NANP (area)", r"(?<![\w+])(?:\+?1[ .\-]?)?\(\d{3}\)[ .\-]?\d{3}[ .\-]\d{4}(?![\w])", 0.6),
        Pattern("NANP dashed", r"(?<![\w.+\-])(?:\+?1[ .\-])?\d{3}[.\-]\d{3}[.\-]\d{4}(?![\w]|[.\-]\d)", 0.5),
    ]

    def __init__(self, supported_language: str):
        super().__init__(
            supported_entity="PHONE_NUMBER",
            patterns=self.PATTERNS,
            context=PHONE_CONTEXT,
            supported_language=supported_language,
            name="IntlPhoneRecognizer",
            global_regex_flags=regex.MULTILINE,
        )

    def invalidate_result(self, pattern_text: str) -> bool:
        digits = sum(ch.isdigit() for ch in pattern_text)
        return not 8 <= digits <= 15  # E.164 allows at most 15 digits


class DateAwarePhoneRecognizer(PhoneRecognizer):
    """Presidio's python-phonenumbers recogniser minus what only looks like a number: dotted or
    slashed dates ("bis 30.04.2024") and build numbers ("build 22631.3155")."""

    _DATE = regex.compile(r"^(?:\d{1,2}[./]\d{1,2}[./](?:\d{4}|\d{2})|\d{4}[./\-]\d{1,2}[./\-]\d{1,2})$")
    _VERSION_CUE = regex.compile(
        r"(?i)(?:\bv|version|versión|versão|ver\.?|build|release|firmware|fw|update|patch|kb)\s*:?\s*$"
    )

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        return [
            r
            for r in super().analyze(text, entities, nlp_artifacts)  # type: ignore[arg-type]  # presidio passes None too
            if not self._DATE.match(text[r.start : r.end])
            and not self._VERSION_CUE.search(text[max(0, r.start - 20) : r.start])
        ]


class CuedPhoneRecognizer(LocalRecognizer):
    """Local formats after a phone cue ("Ring me on 555-0105", "Tel. (030) 123 45 67", "tlm 912-345-678"):
    7 to 15 digits in groups, which without the cue could be any number."""

    _CUE = regex.compile(
        r"(?i)(?<![\p{L}])(?:phone|telephone|tel|tél|tlf|tlm|mobile|mob|cell|call|ring|fax|whatsapp|sms|number|"
        r"reach|reached|contact|telefon|telefonnummer|tel\.-nr|handy|mobil|rufnummer|nummer|erreichbar|anrufen|"
        r"teléfono|telefono|móvil|movil|celular|llamar|llámenme|llamadme|número|numero|téléphone|telephone|portable|"
        r"rappeler|rappelez-moi|joindre|joignable|numéro|telefone|telemóvel|telemovel|contacto|contato|ligar|"
        r"liguem-me|ligue)(?![\p{L}])\.?"
    )
    _NUMBER = regex.compile(
        r"(?:[ \t]*(?:[:\-–]|me|on|at|to|is|ist|unter|am|al|au|le|es|est|é|para|o|para o|em|no|de|my|mein|meine|mi|mon|o meu)(?![\p{L}]))*[ \t]*"
        r"((?:\+|00)?[ \t]?(?:\(\d{1,5}\)|\d{1,5})(?:[ \t]?[./\-][ \t]?|[ \t])?(?:(?:\(0\)|\(\d{1,5}\)|\d{1,5})(?:[ \t]?[./\-][ \t]?|[ \t])?){1,6})"
    )

    def __init__(self, supported_language: str):
        super().__init__(
            supported_entities=["PHONE_NUMBER"], supported_language=supported_language, name="CuedPhoneRecognizer"
        )

    @staticmethod
    def _not_a_phone(value: str) -> bool:
        """Dates and dotted versions after "on"/"number" ("call on 15.03.2024", "number 10.0.19045")."""
        if DateAwarePhoneRecognizer._DATE.match(value):
            return True
        groups = value.split(".")
        return (
            len(groups) > 2
            and regex.fullmatch(r"[\d.]+", value) is not None
            and any(len(g) == 1 or len(g) > 4 for g in groups)
        )

    def load(self) -> None:
        pass

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results = []
        for cue in self._CUE.finditer(text):
            m = self._NUMBER.match(text, cue.end())
            if m is None:
                continue
            value = m.group(1).rstrip(" \t./-")
            start = m.start(1) + (len(m.group(1)) - len(m.group(1).lstrip(" \t")))
            end = m.start(1) + len(value)
            digits = sum(ch.isdigit() for ch in value)
            if self._not_a_phone(value):
                continue
            if 7 <= digits <= 15 and not (end < len(text) and text[end].isalnum()):
                results.append(_result(self, "PHONE_NUMBER", start, end, 0.6))
        return results


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's EmailRecognizer validated against tldextract's bundled suffix list.

    The stock recogniser calls `tldextract.extract`, which downloads the Public Suffix List on
    first use: a network call from the redaction path (and a multi-second stall where there is
    no network).
    """

    def __init__(self, supported_language: str):
        super().__init__(supported_language=supported_language)
        self._tld = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)

    def validate_result(self, pattern_text: str) -> bool:
        return self._tld(pattern_text).fqdn != ""


# --- URLs and IPs ------------------------------------------------------------------------------

_URL_CHARS = r"[^\s<>\"'()\[\]{}]"
_URL_END = r"[^\s<>\"'()\[\]{}.,;:!?]"
# Bare domains only in lower case and only under TLDs common in these markets: "ASP.NET",
# "Booking.com" or file names such as main.py / notes.md are not personal data.
_BARE_TLDS = "com|net|org|info|biz|io|eu|de|at|ch|es|fr|pt|br|uk|it|nl|be|mx|ar|us|ca|co|dev|app|shop|online"


class TicketUrlRecognizer(UrlRecognizer):
    """Presidio's UrlRecognizer with patterns that stop before trailing punctuation and do not
    treat any word.tld-looking token (file names, "app.config") as a URL."""

    def __init__(self, supported_language: str):
        patterns = [
            Pattern("Scheme URL", rf"(?i)\b(?:https?|ftp)://{_URL_CHARS}*{_URL_END}", 0.6),
            Pattern("www URL", rf"(?i)(?<![\w.@-])www\d{{0,3}}\.{_URL_CHARS}*{_URL_END}", 0.6),
            Pattern(
                "Bare domain",
                rf"(?<![\w.@/-])(?:[a-z0-9](?:[a-z0-9\-]{{0,61}}[a-z0-9])?\.)+(?:{_BARE_TLDS})(?![\w\-@])(?:/{_URL_CHARS}*{_URL_END})?",
                0.5,
            ),
        ]
        super().__init__(patterns=patterns, supported_language=supported_language)
        self.global_regex_flags = regex.MULTILINE  # case matters for the bare-domain rule


class VersionAwareIpRecognizer(IpRecognizer):
    """Presidio's IpRecognizer, minus four-part version numbers ("version 1.2.3.4", "build 10.0.0.1")."""

    _VERSION_CUE = regex.compile(
        r"(?i)(?:\bv|version|versión|versão|ver\.?|build|release|firmware|fw|update|patch)\s*:?\s*$"
    )

    _PORT = regex.compile(r"\]?:\d{1,5}(?!\d)")

    def __init__(self, supported_language: str):
        super().__init__(supported_language=supported_language)

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None, regex_flags: int | None = None
    ) -> list[RecognizerResult]:
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        kept = []
        for r in results:
            if self._VERSION_CUE.search(text[max(0, r.start - 20) : r.start]):
                continue
            # "93.201.232.208:8080", "[2001:db8::1]:443": the port belongs to the same endpoint.
            port = self._PORT.match(text, r.end)
            if port is not None:
                r.end = port.end()
            kept.append(r)
        return kept


# --- person names from cues --------------------------------------------------------------------

_TITLES = (
    "Mr", "Mrs", "Ms", "Miss", "Dr", "Prof", "Herr", "Herrn", "Frau", "Sr", "Sra", "Srta", "Don", "Doña", "Dona",
    "Mme", "Mlle", "Monsieur", "Madame", "Senhor", "Senhora", "Sir",
)  # fmt: skip
# "M." (French Monsieur) only with its dot: a bare "M" is a size or a plan name.
_TITLE_ALTERNATION = r"(?:M\.|(?:" + "|".join(_TITLES) + r")(?:\.|(?=\s)))"
_PARTICLES = frozenset("von van der den de del della di da das do dos du la le y e zu ten ter".split())
# Title-case words that follow greetings and sign-offs without being names. Addressees
# ("Team", "Kundenservice", "Inc") mark the words before them as an organisation; sentence
# starters ("Ich", "Please") mark where a name ended.
_ADDRESSEES = frozenset(
    """
    Team Support Service Services Customer Customers Sir Madam All Everyone There Folks Guys Friends Colleagues
    Admin Administrator Sales Billing Helpdesk Help Desk Staff Manager Hotline Department Marketing Finance
    Accounting Operations Engineering Legal Procurement Inc Ltd Corp Corporation Company Group Holding Solutions
    Systems Technologies Software Consulting Bank Shop Store Kundenservice Kundendienst Kunde Kundin Damen Herren
    Kollegen Kolleginnen Zusammen Abteilung Buchhaltung Vertrieb Einkauf Support-Team Service-Team Equipo Soporte
    Señores Señoras Señor Señora Atención Cliente Clientes Servicio Todos Amigos Departamento Ventas Compras
    Contabilidad Équipe Equipe Messieurs Mesdames Tous Client Clients Comptabilité Achats Direction Equipa
    Senhores Suporte Atendimento Pessoal Vendas Financeiro
    """.split()
)
_STARTERS = frozenset(
    """
    Hi Hello Dear Good Morning Thanks Thank Regards Best Kind Sincerely Cheers Again Yours Please The This That
    These It Is Are Can Could Would Will Just Hope Sorry Unfortunately Since Today Yesterday When After Before Your
    You We My Our Hey Also And But So Sent Grüße Gruß Grüßen Dank Danke Vielen Freundliche Freundlichen Liebe
    Lieber Beste Viele Herzliche Schöne Ich Wir Mein Meine Unser Unsere Bitte Das Die Der Es Sie Ihr Ihre Ihrem
    Ihren Ihrer Können Könnten Leider Seit Heute Gestern Wenn Nach Vor Mit Ist Hallo Guten Tag Morgen Abend Sehr
    Geehrte Geehrter Frau Herr Herrn Gracias Saludos Yo Tengo Mi Mis Nuestro Nuestra Por El La Los Las Hoy Desde
    Necesito Quisiera Me Les Le Su Sus Hay Hola Buenos Buenas Días Tardes Estimado Estimada Estimados Querido
    Querida Atentamente Cordialmente Un Muchas Merci Bonjour Bonsoir Cher Chère Je Nous Mon Ma Mes Notre Nos
    Pouvez Vous Votre Vos Depuis Il Elle Madame Monsieur Bien Salutations Sincères Obrigado Obrigada Eu Meu Minha
    Nós Nosso Nossa Hoje Preciso Gostaria Estou Tenho Não Olá Bom Boa Dia Tarde Noite Prezado Prezada Prezados
    Caro Cara Atenciosamente Att Abraços Cumprimentos Muito Os As Sim Yes No
    """.split()
)
_NOT_NAMES = _ADDRESSEES | _STARTERS
_NAME_TOKEN = regex.compile(r"(?:(?:\p{Lu}['’])?\p{Lu}\p{Ll}+(?:\p{Lu}\p{Ll}+)?(?:[-'’]\p{Lu}?\p{Ll}+)*|\p{Lu}\.)")
_TITLE = regex.compile(_TITLE_ALTERNATION + r"\s*")
_GAP = regex.compile(r"[ \t\u00a0]+")
_LOWER_WORD = regex.compile(r"\p{Ll}+")


def _cue_alternation(cues: Iterable[str]) -> str:
    return "|".join(r"\s+".join(regex.escape(part) for part in c.split()) for c in sorted(cues, key=len, reverse=True))


_GREETINGS = """dear|hi|hello|hey|good morning|good afternoon|good evening|sehr geehrte|sehr geehrter|liebe|lieber|hallo|
guten tag|guten morgen|moin|servus|estimado|estimada|estimados|querido|querida|hola|buenos días|buenas tardes|buenas|
bonjour|bonsoir|cher|chère|salut|prezado|prezada|caro|cara|olá|oi|bom dia|boa tarde|boa noite"""
_SIGNOFFS = """sincerely|regards|best regards|kind regards|warm regards|warmest regards|with kind regards|best wishes|best|
cheers|thanks|thank you|many thanks|thanks again|thanks and regards|thanks & regards|yours truly|yours sincerely|
yours faithfully|yours|respectfully|all the best|have a nice day|
mit freundlichen grüßen|mit freundlichen grüssen|mit freundlichem gruß|mit besten grüßen|freundliche grüße|
freundliche grüsse|viele grüße|viele grüsse|beste grüße|beste grüsse|liebe grüße|liebe grüsse|herzliche grüße|
herzliche grüsse|schöne grüße|lg|vg|mfg|gruß|grüße|danke|vielen dank|besten dank|danke schön|
atentamente|saludos|un saludo|un cordial saludo|reciba un cordial saludo|saludos cordiales|cordialmente|gracias|
muchas gracias|un abrazo|
cordialement|bien cordialement|très cordialement|bien à vous|salutations|sincères salutations|
meilleures salutations|merci|merci beaucoup|merci d'avance|bonne journée|amicalement|respectueusement|
atenciosamente|cumprimentos|melhores cumprimentos|com os melhores cumprimentos|os meus cumprimentos|
com os meus cumprimentos|obrigado|obrigada|muito obrigado|muito obrigada|obrigado desde já|abraços|abraço|
um abraço|att|saudações|grato|grata"""
# Self-introductions, and "for the attention of" in letters and parcels (z. Hd., attn, c/o).
_INTRODUCTIONS = """my name is|mein name ist|ich heiße|ich heisse|me llamo|mi nombre es|je m'appelle|je m’appelle|
mon nom est|meu nome é|me chamo|chamo-me|z. hd.|z.hd.|zu händen|zu Händen von|attn.|attn|for the attention of|c/o|
à l'attention de|a l'attention de|à l’attention de|a la atención de|a/a|aos cuidados de|ao cuidado de"""
_FIELD_LABELS = """name|full name|from|contact|customer|von|kunde|kundin|ansprechpartner|nombre|de|cliente|contacto|nom|
client|nome|contato"""


def _words(block: str) -> list[str]:
    return [w.strip() for w in block.replace("\n", "").split("|")]


class _NotNameSet(frozenset[str]):
    """_NOT_NAMES plus the compounds no list can enumerate ("Kundensupport", "Service-Team")."""

    _COMPOUND = regex.compile(r"(?i)^kunden|(?:support|service|team|abteilung|desk|center|centre)$")

    def __contains__(self, word: object) -> bool:
        return super().__contains__(word) or (isinstance(word, str) and self._COMPOUND.search(word) is not None)


# One-word greetings and sign-offs are no names either ("Merci.\n\nCordialement, ...").
_NOT_NAMES = _NotNameSet(
    _NOT_NAMES | {w.capitalize() for w in _words(_GREETINGS) + _words(_SIGNOFFS) if " " not in w and "'" not in w}
)


class CueNameRecognizer(LocalRecognizer):
    """Person names where tickets put them: after greetings, under sign-offs, after "my name is"
    or a "Name:"/"From:" label, and after titles (Mr, Frau, Sra., Mme, ...).

    Without an NER model this is the main PERSON source. A cue alone proves nothing ("Hi team",
    "Liebe Grüße"), so the name must be Title-case words that are not on the stop list and, for
    greetings and sign-offs, must end where the salutation ends (punctuation or line end).
    """

    _LINE_START = r"(?:(?<=^[ \t>]*)|(?<=[.!?][ \t]+))"
    _PATTERNS = (
        # (cue regex, strict end, score)
        (regex.compile(_LINE_START + r"(?i:" + _cue_alternation(_words(_GREETINGS)) + r")[ \t]+", regex.M), True, 0.6),
        (
            regex.compile(
                _LINE_START
                + r"(?i:"
                + _cue_alternation(_words(_SIGNOFFS))
                + r")\.?[ \t]*[,!.]?[ \t]*(?:\r?\n[ \t>]*){0,2}",
                regex.M,
            ),
            True,
            0.6,
        ),
        (regex.compile(r"(?i:\b(?:" + _cue_alternation(_words(_INTRODUCTIONS)) + r"))[ \t]*:?[ \t]+"), False, 0.7),
        (regex.compile(r"(?m)^[ \t>]*(?i:" + _cue_alternation(_words(_FIELD_LABELS)) + r")[ \t]*:[ \t]*"), True, 0.7),
    )
    _TITLE_CUE = regex.compile(r"(?<![\w.])(?=" + _TITLE_ALTERNATION + ")")
    _STRICT_END = regex.compile(r"[ \t]*(?:$|[,!:;.)|<(\r\n]|[-–—][ \t])", regex.M)

    def __init__(self, supported_language: str):
        super().__init__(supported_entities=["PERSON"], supported_language=supported_language, name="CueNameRecognizer")

    def load(self) -> None:
        pass

    @staticmethod
    def _skip_titles(text: str, pos: int) -> tuple[int, bool]:
        had_title = False
        for _ in range(2):  # "Herr Dr. Müller"
            m = _TITLE.match(text, pos)
            if m is None:
                break
            pos, had_title = m.end(), True
        return pos, had_title

    @staticmethod
    def _name_tokens(text: str, pos: int) -> Iterator[tuple[int, int]]:
        """Consecutive name-like tokens from pos, allowing lower-case particles between them."""
        count = 0
        while count < 4:
            m = _NAME_TOKEN.match(text, pos)
            if m is None or m.group() in _NOT_NAMES:
                return
            if m.end() < len(text) and (text[m.end()].isalnum() or text[m.end()] == "@"):
                return  # part of a longer token (ACME2, e-mail local part): not a name
            yield m.start(), m.end()
            count += 1
            pos = m.end()
            gap = _GAP.match(text, pos)
            if gap is None:
                return
            nxt = gap.end()
            while True:
                word = _LOWER_WORD.match(text, nxt)
                if word is None or word.group() not in _PARTICLES:
                    break
                gap2 = _GAP.match(text, word.end())
                if gap2 is None:
                    return
                nxt = gap2.end()
            pos = nxt

    def _name_at(self, text: str, pos: int, strict_end: bool) -> tuple[int, int] | None:
        pos, had_title = self._skip_titles(text, pos)
        tokens = list(self._name_tokens(text, pos))
        while tokens and text[tokens[-1][1] - 1] == ".":
            tokens.pop()  # a trailing initial is more likely a sentence end than part of the name
        if not tokens:
            return None
        start, end = tokens[0][0], tokens[-1][1]
        if strict_end and not had_title and not self._ends_cleanly(text, end):
            return None
        return start, end

    def _ends_cleanly(self, text: str, end: int) -> bool:
        if self._STRICT_END.match(text, end):
            return True
        follower = _NAME_TOKEN.match(text, end + 1) if end < len(text) and text[end] == " " else None
        return follower is not None and follower.group() in _STARTERS

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        for pattern, strict, score in self._PATTERNS:
            for m in pattern.finditer(text):
                span = self._name_at(text, m.end(), strict)
                if span is not None:
                    results.append(_result(self, "PERSON", span[0], span[1], score))
        for m in self._TITLE_CUE.finditer(text):
            span = self._name_at(text, m.end(), strict_end=False)
            if span is not None and span[0] > m.end():  # a title was consumed
                results.append(_result(self, "PERSON", span[0], span[1], 0.65))
        return results
