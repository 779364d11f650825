"""The demo's ML models: a churn classifier over CRM accounts and a TF-IDF reply retriever over the KB.

Artifacts are joblib (pickle) files: only ever load ones this module wrote.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["ChurnModel", "ReplyRetriever", "build_reply_index", "clear_cache", "train_churn_model"]

REPLY_GREETING = "Hi there,\n\nThanks for getting in touch."
REPLY_SIGN_OFF = "Best regards,\nCustomer Support"


def _connect_readonly(path: Path) -> sqlite3.Connection:
    # Read-only URI: training must never create an empty database when the path is wrong.
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)


def _dump_atomic(obj: Any, out_path: Path) -> None:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    try:
        joblib.dump(obj, tmp_name)
        os.replace(tmp_name, out_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


# --- training / indexing --------------------------------------------------------------------------


def train_churn_model(
    source_db: Path, out_path: Path, *, features: tuple[str, ...], now: dt.datetime | None = None
) -> dict:
    """Fit the churn classifier on ``accounts`` and save it to ``out_path``.

    ``now`` only stamps ``trained_at``; pass it for byte-identical artifacts across runs.
    """
    conn = _connect_readonly(source_db)
    try:
        rows = conn.execute(f"SELECT {', '.join(features)}, churned FROM accounts ORDER BY account_id").fetchall()
    finally:
        conn.close()
    if not rows:
        raise ValueError(f"no accounts to train on in {source_db}")
    data = np.asarray(rows, dtype=float)
    X, y = data[:, :-1], data[:, -1].astype(int)
    if len(set(y)) < 2:
        raise ValueError("training labels contain a single class")

    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(random_state=0))])
    pipe.fit(X, y)
    # Training-set AUC: a smoke signal that the demo data carries signal, not a generalisation estimate.
    auc = float(roc_auc_score(y, pipe.predict_proba(X)[:, 1]))
    trained_at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0).isoformat()
    _dump_atomic({"pipeline": pipe, "features": list(features), "trained_at": trained_at, "auc": auc}, out_path)
    return {"auc": round(auc, 4), "rows": len(rows)}


def build_reply_index(source_db: Path, out_path: Path) -> dict:
    """Fit TF-IDF over the knowledge base and save vectorizer, matrix and articles to ``out_path``."""
    conn = _connect_readonly(source_db)
    try:
        rows = conn.execute("SELECT article_id, title, body, topic FROM kb_articles ORDER BY article_id").fetchall()
    finally:
        conn.close()
    if not rows:
        raise ValueError(f"no kb_articles to index in {source_db}")
    articles = [{"article_id": a, "title": t, "body": b, "topic": p} for a, t, b, p in rows]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, stop_words="english")
    matrix = vectorizer.fit_transform(f"{a['title']}\n{a['body']}" for a in articles)
    _dump_atomic({"vectorizer": vectorizer, "matrix": matrix, "articles": articles}, out_path)
    return {"articles": len(articles)}


# --- loading --------------------------------------------------------------------------------------

_cache: dict[tuple[str, str], tuple[tuple[int, int, int], Any]] = {}
_cache_lock = threading.Lock()


def _load_cached(kind: str, path: Path, build: Callable[[dict], Any]) -> Any:
    """Return the object built from the artifact at ``path``, reloading only when the file changes.

    The key includes inode and size as well as mtime, since os.replace swaps in a new inode even
    when two writes land within the filesystem's mtime resolution.
    """
    resolved = Path(path).resolve()
    st = resolved.stat()
    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    key = (kind, str(resolved))
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    payload = joblib.load(resolved)
    if not isinstance(payload, dict):
        raise ValueError(f"{resolved} is not a {kind} artifact")
    obj = build(payload)
    with _cache_lock:
        _cache[key] = (stamp, obj)
    return obj


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


# --- churn ----------------------------------------------------------------------------------------


class ChurnModel:
    def __init__(self, pipeline: Pipeline, features: list[str], *, trained_at: str = "", auc: float | None = None):
        self.pipeline = pipeline
        self.features = list(features)
        self.trained_at = trained_at
        self.auc = auc
        scaler = pipeline.named_steps["scale"]
        self._mean = np.asarray(scaler.mean_, dtype=float)
        self._scale = np.asarray(scaler.scale_, dtype=float)
        self._coef = np.asarray(pipeline.named_steps["clf"].coef_[0], dtype=float)

    @classmethod
    def load(cls, path: Path) -> ChurnModel:
        def build(payload: dict) -> ChurnModel:
            if "pipeline" not in payload or "features" not in payload:
                raise ValueError(f"{path} is not a churn model artifact")
            extra = {"trained_at": payload.get("trained_at", ""), "auc": payload.get("auc")}
            return cls(payload["pipeline"], payload["features"], **extra)

        return _load_cached("churn", path, build)

    def _vector(self, record: Mapping[str, Any]) -> np.ndarray:
        values = []
        for name in self.features:
            raw = record.get(name)
            if raw is None or raw == "":
                raise ValueError(f"missing feature: {name}")
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise ValueError(f"feature {name} is not numeric: {raw!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"feature {name} is not finite: {raw!r}")
            values.append(value)
        return np.asarray(values, dtype=float)

    def predict(self, record: Mapping[str, Any]) -> tuple[float, dict[str, float]]:
        """Churn probability plus each feature's contribution to the log-odds (coef x standardised value)."""
        x = self._vector(record)
        probability = float(self.pipeline.predict_proba(x.reshape(1, -1))[0, 1])
        contributions = self._coef * (x - self._mean) / self._scale
        return probability, {name: round(float(c), 4) for name, c in zip(self.features, contributions, strict=True)}


# --- replies --------------------------------------------------------------------------------------


class ReplyRetriever:
    def __init__(self, vectorizer: TfidfVectorizer, matrix: Any, articles: list[dict]):
        self.vectorizer = vectorizer
        self.matrix = matrix
        self.articles = list(articles)

    @classmethod
    def load(cls, path: Path) -> ReplyRetriever:
        def build(payload: dict) -> ReplyRetriever:
            if not {"vectorizer", "matrix", "articles"} <= payload.keys():
                raise ValueError(f"{path} is not a reply index artifact")
            return cls(payload["vectorizer"], payload["matrix"], payload["articles"])

        return _load_cached("reply", path, build)

    def suggest(self, text: str) -> dict:
        """Best-matching KB article and a reply built from it. Similarity is cosine in [0, 1]."""
        if not text or not text.strip():
            raise ValueError("text is empty")
        # TF-IDF rows are L2-normalised, so the dot product is the cosine similarity.
        scores = (self.matrix @ self.vectorizer.transform([text]).T).toarray().ravel()
        best = int(np.argmax(scores))  # ties resolve to the lowest article_id, keeping output stable
        article = self.articles[best]
        return {
            "article_id": article["article_id"],
            "title": article["title"],
            "similarity": round(min(max(float(scores[best]), 0.0), 1.0), 4),
            "reply": f"{REPLY_GREETING}\n\n{article['body']}\n\n{REPLY_SIGN_OFF}",
        }
