"""Builds the Presidio AnalyzerEngine the Redactor uses: NLP engine, recognisers, registry.

Every recogniser is registered under one analysis language, ANALYSIS_LANGUAGE, and carries
context words in en/de/es/fr/pt: a ticket's language is not known before redaction, and
running the whole recogniser set once per candidate language would cost five passes for the
same regexes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import spacy
from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerRegistry
from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, NlpEngine, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    CryptoRecognizer,
    EsNieRecognizer,
    EsNifRecognizer,
    IbanRecognizer,
    MacAddressRecognizer,
    SpacyRecognizer,
    UsSsnRecognizer,
)

from server.config import RedactionSettings
from server.privacy.contextual import AddressRecognizer, LabelledValueRecognizer, ObfuscatedEmailRecognizer
from server.privacy.names import FirstNameRecognizer
from server.privacy.recognizers import (
    PHONE_CONTEXT,
    PHONE_REGIONS,
    CardNumberRecognizer,
    CuedPhoneRecognizer,
    CueNameRecognizer,
    DateAwarePhoneRecognizer,
    GroupPatternRecognizer,
    IntlPhoneRecognizer,
    LenientIbanRecognizer,
    OfflineEmailRecognizer,
    TicketUrlRecognizer,
    VersionAwareIpRecognizer,
)

# spaCy's code for its language-neutral tokenizer; Presidio only needs a two-letter key.
ANALYSIS_LANGUAGE = "xx"
# Drops Presidio's "very weak" guesses (a bare 9-digit number as US_SSN scores 0.05) unless a
# context word ("SSN", "Telefon", ...) lifted them.
SCORE_THRESHOLD = 0.3

CARD_CONTEXT = [
    "credit",
    "card",
    "visa",
    "mastercard",
    "amex",
    "maestro",
    "kreditkarte",
    "karte",
    "tarjeta",
    "carte",
    "cartão",
    "cartao",
]
IBAN_CONTEXT = [
    "iban",
    "bank",
    "konto",
    "bankverbindung",
    "cuenta",
    "compte",
    "conta",
    "transferencia",
    "virement",
    "überweisung",
]
SSN_CONTEXT = ["social", "security", "ssn", "ssns"]


class TokenizerNlpEngine(NlpEngine):
    """Presidio NLP engine over a blank spaCy pipeline: tokens, and lower-cased words as lemmas.

    That is all the pattern recognisers and the context-word enhancer need, and it needs no model
    download. NER is absent, so PERSON comes from cue patterns only.
    """

    def __init__(self, language: str):
        self._language = language
        self._nlp: spacy.language.Language | None = None
        self._lock = threading.Lock()  # spaCy does not promise thread-safe tokenizer/vocab writes

    def load(self) -> None:
        self._nlp = spacy.blank(self._language)

    def is_loaded(self) -> bool:
        return self._nlp is not None

    def _loaded(self) -> spacy.language.Language:
        if self._nlp is None:
            raise RuntimeError("NLP engine used before load()")
        return self._nlp

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        with self._lock:  # NlpArtifacts looks words up in the vocab too
            doc = self._loaded()(text)
            artifacts = NlpArtifacts(
                entities=[],
                tokens=doc,
                tokens_indices=[t.idx for t in doc],
                lemmas=[t.lower_ for t in doc],
                nlp_engine=self,
                language=language,
                scores=[],
            )
        return _with_keyword_set(artifacts)

    def process_batch(
        self, texts: Iterable[str], language: str, batch_size: int = 1, n_process: int = 1, **kwargs: object
    ) -> Iterator[tuple[str, NlpArtifacts]]:
        for text in texts:
            yield text, self.process_text(str(text), language)

    def is_stopword(self, word: str, language: str) -> bool:
        return bool(self._loaded().vocab[word].is_stop)

    def is_punct(self, word: str, language: str) -> bool:
        return bool(self._loaded().vocab[word].is_punct)

    def get_supported_entities(self) -> list[str]:
        return []

    def get_supported_languages(self) -> list[str]:
        return [self._language]


class LockedSpacyNlpEngine(SpacyNlpEngine):
    """Presidio's spaCy engine with the pipeline call serialised (see TokenizerNlpEngine)."""

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._lock = threading.Lock()

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        with self._lock:
            return _with_keyword_set(super().process_text(text, language))


def _with_keyword_set(artifacts: NlpArtifacts) -> NlpArtifacts:
    # The context enhancer only tests membership in `keywords`; as a list that is a linear scan
    # per context word per detection.
    artifacts.keywords = frozenset(artifacts.keywords)  # type: ignore[assignment]
    return artifacts


class FastContextEnhancer(LemmaContextAwareEnhancer):
    """Presidio's lemma context enhancer with a binary search for the token under a detection.

    The stock version walks the whole token list for every detection: quadratic, and seconds of
    CPU on a 100 KB ticket full of number-like strings.
    """

    @staticmethod
    def _find_index_of_match_token(word: str, start: int, tokens: Any, tokens_indices: list[int]) -> int:
        # Same predicate as Presidio's: the first token that starts at, or ends after, `start`.
        lo, hi = 0, len(tokens_indices)
        while lo < hi:
            mid = (lo + hi) // 2
            if tokens_indices[mid] == start or start < tokens_indices[mid] + len(tokens[mid]):
                hi = mid
            else:
                lo = mid + 1
        if lo == len(tokens_indices):
            raise ValueError("detection lies beyond the token list")
        return lo


def model_installed(name: str) -> bool:
    return bool(spacy.util.is_package(name)) or Path(name).exists()


def build_nlp_engine(spacy_model: str | None) -> NlpEngine:
    if spacy_model is None:
        return TokenizerNlpEngine(ANALYSIS_LANGUAGE)
    if not model_installed(spacy_model):
        # Presidio would try to download it; the server must not reach the internet on its own.
        raise ValueError(f"spaCy model {spacy_model!r} is not installed (redaction.spacy_model)")
    return LockedSpacyNlpEngine(
        models=[{"lang_code": ANALYSIS_LANGUAGE, "model_name": spacy_model}],
        ner_model_configuration=NerModelConfiguration(),
    )


def build_recognizers(settings: RedactionSettings) -> list[EntityRecognizer]:
    lang = ANALYSIS_LANGUAGE
    recognizers: list[EntityRecognizer] = [
        CreditCardRecognizer(supported_language=lang, context=CARD_CONTEXT),
        CardNumberRecognizer(lang),
        IbanRecognizer(supported_language=lang, context=IBAN_CONTEXT),
        LenientIbanRecognizer(lang),
        OfflineEmailRecognizer(lang),
        DateAwarePhoneRecognizer(supported_language=lang, context=PHONE_CONTEXT, supported_regions=PHONE_REGIONS),
        IntlPhoneRecognizer(lang),
        CuedPhoneRecognizer(lang),
        VersionAwareIpRecognizer(lang),
        UsSsnRecognizer(supported_language=lang, context=SSN_CONTEXT),
        TicketUrlRecognizer(lang),
        MacAddressRecognizer(supported_language=lang),
        CryptoRecognizer(supported_language=lang),
        EsNifRecognizer(supported_language=lang),
        EsNieRecognizer(supported_language=lang),
        CueNameRecognizer(lang),
        FirstNameRecognizer(lang),
        LabelledValueRecognizer(lang),
        ObfuscatedEmailRecognizer(lang),
        AddressRecognizer(lang),
    ]
    for entity, pattern in settings.patterns.items():
        recognizers.append(GroupPatternRecognizer(entity, pattern, lang))
    if settings.spacy_model is not None:
        recognizers.append(SpacyRecognizer(supported_language=lang, supported_entities=["PERSON", "LOCATION"]))
    return recognizers


def build_analyzer(settings: RedactionSettings) -> AnalyzerEngine:
    registry = RecognizerRegistry(supported_languages=[ANALYSIS_LANGUAGE])
    for recognizer in build_recognizers(settings):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(
        registry=registry,
        nlp_engine=build_nlp_engine(settings.spacy_model),
        supported_languages=[ANALYSIS_LANGUAGE],
        default_score_threshold=SCORE_THRESHOLD,
        context_aware_enhancer=FastContextEnhancer(),
    )
