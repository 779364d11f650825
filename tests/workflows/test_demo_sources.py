"""The demo CRM/helpdesk generator and its models: no Django database involved."""

import datetime as dt
import re
import sqlite3

import pytest

from apps.connectors.clients.local_models import ChurnModel, ReplyRetriever, build_reply_index, train_churn_model
from apps.workflows.demo.sources import CHURN_FEATURES, build_source_database

NOW = dt.datetime(2026, 11, 25, 10, 0, tzinfo=dt.UTC)
TABLES = {
    "accounts": "account_id",
    "tickets": "ticket_id",
    "kb_articles": "article_id",
    "crm_tasks": "task_id",
    "ticket_notes": "note_id",
}


def _dump(path):
    conn = sqlite3.connect(path)
    try:
        return {table: conn.execute(f"SELECT * FROM {table} ORDER BY {pk}").fetchall() for table, pk in TABLES.items()}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def source_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "source.sqlite3"
    build_source_database(path, now=NOW)
    return path


@pytest.fixture(scope="module")
def churn_model_path(source_db, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "churn.joblib"
    train_churn_model(source_db, path, features=CHURN_FEATURES, now=NOW)
    return path


@pytest.fixture(scope="module")
def reply_index_path(source_db, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "replies.joblib"
    build_reply_index(source_db, path)
    return path


def test_same_now_gives_identical_tables(source_db, tmp_path):
    again = tmp_path / "again.sqlite3"
    build_source_database(again, now=NOW)
    first, second = _dump(source_db), _dump(again)
    assert first == second
    assert len(first["accounts"]) == 400 and len(first["tickets"]) == 400
    assert first["crm_tasks"] == [] and first["ticket_notes"] == []


def test_rebuild_replaces_existing_file(tmp_path):
    path = tmp_path / "source.sqlite3"
    build_source_database(path, now=NOW, accounts=20, tickets=5)
    build_source_database(path, now=NOW, accounts=30, tickets=7)
    dump = _dump(path)
    assert (len(dump["accounts"]), len(dump["tickets"])) == (30, 7)
    assert [p.name for p in tmp_path.iterdir()] == ["source.sqlite3"]  # no temp files left behind


def test_accounts_shape(source_db):
    conn = sqlite3.connect(source_db)
    rows = conn.execute("SELECT account_id, owner_email, churned, updated_at FROM accounts").fetchall()
    conn.close()
    assert rows[0][0] == "ACC-0001"
    assert all(re.fullmatch(r"[a-z]+\.[a-z]+@northwind\.example", owner) for _, owner, _, _ in rows)
    churn_rate = sum(r[2] for r in rows) / len(rows)
    assert 0.18 <= churn_rate <= 0.32

    ages = [NOW - dt.datetime.fromisoformat(r[3]) for r in rows]
    assert all(age >= dt.timedelta(0) for age in ages)
    stale_share = sum(age > dt.timedelta(days=2) for age in ages) / len(ages)
    assert 0.05 <= stale_share <= 0.12
    fresh = [age for age in ages if age <= dt.timedelta(days=2)]
    assert all(age <= dt.timedelta(hours=12) for age in fresh)
    assert rows[0][3].endswith("+00:00")


def test_tickets_carry_some_contact_details(source_db):
    conn = sqlite3.connect(source_db)
    bodies = [b for (b,) in conn.execute("SELECT body FROM tickets")]
    conn.close()
    with_pii = [b for b in bodies if re.search(r"[\w.]+@[\w-]+\.example|\+1 \d{3} 555 \d{4}", b)]
    assert 0 < len(with_pii) < len(bodies) / 2


def test_refund_article_promises_a_refund(source_db):
    conn = sqlite3.connect(source_db)
    bodies = [b for (b,) in conn.execute("SELECT body FROM kb_articles WHERE topic = 'refund'")]
    conn.close()
    assert any("we will refund" in b.lower() for b in bodies)


def test_churn_model_learns_the_label(source_db, churn_model_path, tmp_path):
    result = train_churn_model(source_db, tmp_path / "churn.joblib", features=CHURN_FEATURES, now=NOW)
    assert result["rows"] == 400
    assert result["auc"] > 0.7

    model = ChurnModel.load(churn_model_path)
    assert model.features == list(CHURN_FEATURES)
    conn = sqlite3.connect(source_db)
    conn.row_factory = sqlite3.Row
    record = dict(conn.execute("SELECT * FROM accounts WHERE account_id = 'ACC-0001'").fetchone())
    conn.close()
    probability, contributions = model.predict(record)
    assert 0.0 <= probability <= 1.0
    assert set(contributions) == set(CHURN_FEATURES)


def test_model_load_is_cached(churn_model_path, reply_index_path):
    assert ChurnModel.load(churn_model_path) is ChurnModel.load(churn_model_path)
    assert ReplyRetriever.load(reply_index_path) is ReplyRetriever.load(reply_index_path)


@pytest.mark.parametrize("bad", [None, "missing"])
def test_churn_model_rejects_missing_feature(churn_model_path, bad):
    record = {name: 1 for name in CHURN_FEATURES}
    if bad is None:
        record["nps"] = None
    else:
        del record["nps"]
    with pytest.raises(ValueError, match="nps"):
        ChurnModel.load(churn_model_path).predict(record)


def test_retriever_maps_double_charge_to_refund_article(reply_index_path):
    suggestion = ReplyRetriever.load(reply_index_path).suggest("I was charged twice, please refund me")
    assert suggestion["article_id"] == "KB-004"
    assert "refund" in suggestion["title"].lower()
    assert 0.1 < suggestion["similarity"] <= 1.0
    assert "we will refund" in suggestion["reply"]
    assert suggestion["reply"].startswith("Hi") and suggestion["reply"].rstrip().endswith("Customer Support")


@pytest.mark.parametrize("text", ["", "   \n"])
def test_retriever_rejects_empty_text(reply_index_path, text):
    with pytest.raises(ValueError):
        ReplyRetriever.load(reply_index_path).suggest(text)
