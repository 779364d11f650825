"""File sources: CSV / JSON Lines uploads checked row by row, and kept all or nothing."""

import json

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.connectors import datasets
from apps.connectors.clients import files
from apps.connectors.clients.errors import ConnectorError
from apps.connectors.clients.registry import client_for
from apps.connectors.models import Connector, DatasetRecord, DatasetSync, SourceDataset
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.permissions.services import object_permission_grant
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CSV = "account_id,region,nps,updated_at\nACC-1,EMEA,9,2026-11-24T10:00:00Z\nACC-2,APAC,4,2026-11-25T10:00:00Z\n"


def _file(text: str | bytes, name: str = "accounts.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, text.encode() if isinstance(text, str) else text)


@pytest.fixture
def connector():
    return Connector.objects.create(name="Account list", kind=Connector.Kind.FILE, config={"format": "csv"})


@pytest.fixture
def dataset(connector):
    return SourceDataset.objects.create(
        connector=connector,
        name="Accounts",
        table="accounts",
        key_field="account_id",
        updated_at_field="updated_at",
        quality_rules={
            "required": ["region"],
            "allowed": {"region": ["EMEA", "APAC", "LATAM"]},
            "ranges": {"nps": {"min": 0, "max": 10}},
        },
    )


@pytest.fixture
def integrator(connector):
    group = Group.objects.create(name="Integrators")
    object_permission_grant(group=group, codename="change_connector", obj=connector)
    user = UserFactory()
    user.groups.add(group)
    return user


def _parse(dataset, text, **config):
    dataset.connector.config = {"format": "csv", **config}
    return client_for(dataset.connector).parse(_file(text), dataset=dataset)


def test_csv_rows_are_parsed_with_a_byte_order_mark_and_any_common_delimiter(dataset):
    parsed = _parse(dataset, "\ufeff" + CSV.replace(",", ";"))
    assert parsed.errors == []
    assert parsed.rows[0] == (
        2,
        {"account_id": "ACC-1", "region": "EMEA", "nps": "9", "updated_at": "2026-11-24T10:00:00Z"},
    )
    assert [number for number, _ in parsed.rows] == [2, 3]


def test_row_errors_name_the_line_and_the_field(dataset):
    text = (
        "account_id,region,nps,updated_at\n"
        "ACC-1,EMEA,9,2026-11-24\n"
        ",EMEA,5,2026-11-24\n"  # no key
        "ACC-3,Mars,11,2026-11-24\n"  # two rules broken
        "ACC-4,APAC,lots,2026-11-24\n"  # not a number
        "ACC-5,APAC\n"  # too few values
        "\n"
        "ACC-6,,3,2026-11-24\n"  # required region empty
    )
    parsed = _parse(dataset, text)
    assert [number for number, _ in parsed.rows] == [2]
    assert parsed.errors == [
        {"row": 3, "field": "account_id", "message": "The key field account_id is empty or missing"},
        {"row": 4, "field": "region", "message": "region is 'Mars', not one of EMEA, APAC, LATAM"},
        {"row": 4, "field": "nps", "message": "nps is 11, above the maximum 10"},
        {"row": 5, "field": "nps", "message": "nps is 'lots', not a number"},
        {"row": 6, "field": "", "message": "2 values for 4 columns"},
        {"row": 8, "field": "region", "message": "region is required but empty"},
    ]


def test_json_lines_keep_their_types_and_report_bad_lines(dataset):
    lines = [
        json.dumps({"account_id": "ACC-1", "region": "EMEA", "nps": 9}),
        "",
        "{not json",
        json.dumps(["ACC-2"]),
        json.dumps({"account_id": "ACC-3", "region": "APAC", "nps": -1}),
    ]
    parsed = _parse(dataset, "\n".join(lines), format="jsonl")
    assert parsed.rows == [(1, {"account_id": "ACC-1", "region": "EMEA", "nps": 9})]
    assert [(e["row"], e["message"].split(":")[0]) for e in parsed.errors] == [
        (3, "Not valid JSON"),
        (4, "Expected a JSON object, got list"),
        (5, "nps is -1, below the minimum 0"),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"account_id,region\n\xff\xfeACC-1,EMEA\n", "The file is not UTF-8 text"),
        (b"", "The file is empty"),
        (b"account_id,,nps\nACC-1,EMEA,3\n", "Column(s) 2 of the header have no name"),
        (b"account_id,nps,nps\nACC-1,3,3\n", "The header names nps more than once"),
        (b"account_id,region,nps\n", "The file has no rows"),
    ],
)
def test_whole_file_problems_are_one_clear_error(dataset, content, message):
    with pytest.raises(ConnectorError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _parse(dataset, content)


def test_size_and_row_limits(dataset, monkeypatch):
    monkeypatch.setattr(files, "MAX_ROWS", 1)
    with pytest.raises(ConnectorError, match="more than 1 rows"):
        _parse(dataset, CSV)
    monkeypatch.setattr(files, "MAX_BYTES", 50)
    with pytest.raises(ConnectorError, match=r"The file is 0\.0 MB; the limit is 0 MB"):
        _parse(dataset, CSV)


def test_an_upload_replaces_the_records_and_is_read_by_subject(dataset, integrator):
    actor = Actor(user=integrator)
    first = datasets.dataset_upload(actor=actor, dataset=dataset, uploaded_file=_file(CSV))
    assert first.status == DatasetSync.Status.SUCCEEDED and (first.rows_read, first.rows_written) == (2, 2)
    assert first.trigger == "upload" and first.started_by == integrator

    second = datasets.dataset_upload(
        actor=actor,
        dataset=dataset,
        uploaded_file=_file("account_id,region,nps,updated_at\nACC-2,LATAM,7,2026-11-25T12:00:00+00:00\n", "v2.csv"),
    )
    assert second.status == DatasetSync.Status.SUCCEEDED
    assert list(DatasetRecord.objects.filter(dataset=dataset).values_list("key", flat=True)) == ["ACC-2"]
    assert datasets.dataset_read(dataset, "ACC-2") == [
        {"account_id": "ACC-2", "region": "LATAM", "nps": "7", "updated_at": "2026-11-25T12:00:00+00:00"}
    ]
    assert datasets.dataset_read(dataset, "ACC-1") == []
    # The file client reads the same rows, by the dataset's key or by any other field.
    client = client_for(dataset.connector)
    assert client.read_by_key("accounts", "account_id", "ACC-2")[0]["region"] == "LATAM"
    assert client.read_by_key("accounts", "region", "LATAM")[0]["account_id"] == "ACC-2"
    assert client.list_objects() == ["accounts"]
    assert {f.name for f in client.list_fields("accounts")} == {"account_id", "region", "nps", "updated_at"}
    assert client.test() == "CSV file source: 1 dataset, 1 uploaded record"
    record = DatasetRecord.objects.get(dataset=dataset)
    assert record.record_id == "2" and record.as_of.isoformat() == "2026-11-25T12:00:00+00:00"
    # Audited: who uploaded what, in the dataset's history.
    change = dataset.history.first()
    assert change.history_user == integrator and change.history_change_reason == "File uploaded: v2.csv, 1 rows"


def test_a_file_with_any_bad_row_writes_nothing(dataset, integrator):
    actor = Actor(user=integrator)
    datasets.dataset_upload(actor=actor, dataset=dataset, uploaded_file=_file(CSV))
    bad = CSV + "ACC-3,Mars,4,2026-11-25T10:00:00Z\n"
    sync = datasets.dataset_upload(actor=actor, dataset=dataset, uploaded_file=_file(bad, "bad.csv"))
    assert sync.status == DatasetSync.Status.FAILED and sync.rows_read == 3 and sync.rows_written == 0
    assert sync.error == "bad.csv: 1 error in the rows; nothing was written"
    assert sync.row_errors == [
        {"row": 4, "field": "region", "message": "region is 'Mars', not one of EMEA, APAC, LATAM"}
    ]
    assert sorted(DatasetRecord.objects.filter(dataset=dataset).values_list("key", flat=True)) == ["ACC-1", "ACC-2"]


def test_at_most_100_row_errors_are_kept(dataset, integrator):
    rows = "".join(f"ACC-{i},Nowhere,5,2026-11-25\n" for i in range(150))
    sync = datasets.dataset_upload(
        actor=Actor(user=integrator), dataset=dataset, uploaded_file=_file("account_id,region,nps,updated_at\n" + rows)
    )
    assert sync.error.endswith("150 errors in the rows; nothing was written") and len(sync.row_errors) == 100


def test_a_whole_file_problem_fails_the_upload(dataset, integrator):
    sync = datasets.dataset_upload(actor=Actor(user=integrator), dataset=dataset, uploaded_file=_file(b"\xff\xfe"))
    assert sync.status == DatasetSync.Status.FAILED and sync.error.startswith("accounts.csv: The file is not UTF-8")


def test_who_may_upload(dataset, integrator):
    with pytest.raises(PermissionDenied):
        datasets.dataset_upload(actor=Actor(user=UserFactory()), dataset=dataset, uploaded_file=_file(CSV))
    sql = Connector.objects.create(name="CRM", kind=Connector.Kind.SQL)
    object_permission_grant(group=integrator.groups.get(), codename="change_connector", obj=sql)
    table = SourceDataset.objects.create(connector=sql, name="Accounts", table="accounts", key_field="account_id")
    with pytest.raises(ServiceError, match="not a file dataset"):
        datasets.dataset_upload(actor=Actor(user=integrator), dataset=table, uploaded_file=_file(CSV))
    assert not DatasetSync.objects.exists()
