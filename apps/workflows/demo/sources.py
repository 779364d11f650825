"""A fake company's CRM and helpdesk, stored in one SQLite file outside the app's own database.

Everything is generated from fixed seeds relative to a caller-supplied ``now``, so the same ``now``
always yields byte-for-byte identical table contents.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sqlite3
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["CHURN_FEATURES", "KB_ARTICLES", "TOPICS", "build_source_database"]

CHURN_FEATURES: tuple[str, ...] = (
    "arr",
    "seats",
    "tenure_months",
    "logins_30d",
    "support_tickets_90d",
    "nps",
    "late_payments_12m",
)

SEED = 20261125
TARGET_CHURN_RATE = 0.25
STALE_SHARE = 0.08

SCHEMA = """
CREATE TABLE accounts (
    account_id TEXT PRIMARY KEY,
    name TEXT,
    industry TEXT,
    region TEXT,
    arr REAL,
    seats INTEGER,
    tenure_months INTEGER,
    logins_30d INTEGER,
    support_tickets_90d INTEGER,
    nps INTEGER,
    late_payments_12m INTEGER,
    owner_email TEXT,
    churned INTEGER,
    updated_at TEXT
);
CREATE TABLE tickets (
    ticket_id TEXT PRIMARY KEY,
    account_id TEXT,
    subject TEXT,
    body TEXT,
    priority TEXT,
    channel TEXT,
    status TEXT,
    created_at TEXT,
    updated_at TEXT
);
CREATE INDEX tickets_account_id ON tickets (account_id);
CREATE TABLE kb_articles (
    article_id TEXT PRIMARY KEY,
    title TEXT,
    body TEXT,
    topic TEXT
);
CREATE TABLE crm_tasks (
    task_id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created_by TEXT NOT NULL,
    doorstep_delivery_id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE ticket_notes (
    note_id INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id TEXT NOT NULL,
    body TEXT NOT NULL,
    internal INTEGER NOT NULL DEFAULT 1,
    created_by TEXT NOT NULL,
    doorstep_delivery_id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
"""

# --- accounts -------------------------------------------------------------------------------------

NAME_PREFIXES = (
    "Aster", "Birch", "Cobalt", "Delta", "Ember", "Fjord", "Granite", "Harbor", "Indigo", "Juniper",
    "Kestrel", "Lumen", "Meridian", "Nimbus", "Orchid", "Pinnacle", "Quarry", "Redwood", "Summit", "Tidal",
    "Umber", "Vertex", "Willow", "Xenon", "Yarrow", "Zephyr", "Alder", "Beacon", "Cinder", "Drift",
)  # fmt: skip
NAME_SUFFIXES = (
    "Logistics", "Health", "Analytics", "Foods", "Capital", "Robotics", "Media", "Energy", "Labs", "Retail",
    "Freight", "Insurance", "Studios", "Systems", "Partners", "Outdoors", "Pharma", "Mobility", "Textiles", "Works",
)  # fmt: skip
INDUSTRIES = (
    "Software",
    "Retail",
    "Manufacturing",
    "Healthcare",
    "Financial Services",
    "Logistics",
    "Media",
    "Education",
)
REGIONS = ("EMEA", "North America", "LATAM", "APAC")
OWNERS = (
    "maria.rossi", "james.okafor", "lena.schmidt", "arjun.mehta", "sofia.lindqvist",
    "diego.fernandez", "hannah.kim", "tomasz.nowak", "claire.dubois", "kwame.mensah",
)  # fmt: skip
OWNER_DOMAIN = "northwind.example"


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).replace(microsecond=0).isoformat()


def _as_utc(now: dt.datetime) -> dt.datetime:
    # A naive ``now`` is taken to be UTC rather than local time, so output doesn't depend on the host.
    return now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now.astimezone(dt.UTC)


def _account_names(rng: random.Random, count: int) -> list[str]:
    combos = [f"{p} {s}" for p in NAME_PREFIXES for s in NAME_SUFFIXES]
    rng.shuffle(combos)
    # Beyond the combination space, number the repeats so names stay unique.
    return [combos[i % len(combos)] + (f" {i // len(combos) + 1}" if i >= len(combos) else "") for i in range(count)]


def _calibrated_intercept(logit: np.ndarray, target: float) -> float:
    """Bisect the intercept so the mean churn probability hits ``target`` whatever the sample size."""
    lo, hi = -20.0, 20.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if (1 / (1 + np.exp(-(logit + mid)))).mean() < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _generate_accounts(count: int, now: dt.datetime) -> list[tuple]:
    rng = np.random.default_rng(SEED)
    text_rng = random.Random(SEED)

    seats = np.clip(np.round(rng.lognormal(mean=3.6, sigma=0.9, size=count)), 3, 2500).astype(int)
    arr = np.round(seats * rng.uniform(420, 1450, size=count), 2)
    tenure = rng.integers(1, 97, size=count)
    # Latent engagement drives both usage and churn; the model only sees its noisy footprints.
    engagement = rng.beta(2.2, 2.0, size=count)
    logins = np.round(seats * engagement * rng.uniform(6, 22, size=count)).astype(int)
    tickets_90d = rng.poisson(1.0 + 6.0 * (1 - engagement) * rng.uniform(0.5, 1.5, size=count))
    nps = np.clip(np.round(2 + 8 * engagement + rng.normal(0, 1.6, size=count)), 0, 10).astype(int)
    late = rng.poisson(0.3 + 1.4 * rng.beta(1.2, 4.0, size=count) * 3)

    logins_per_seat = logins / seats
    logit = (
        -2.6 * (logins_per_seat - logins_per_seat.mean()) / logins_per_seat.std()
        - 0.6 * (tenure - tenure.mean()) / tenure.std()
        + 0.6 * (tickets_90d - tickets_90d.mean()) / tickets_90d.std()
        - 0.7 * (nps - nps.mean()) / nps.std()
        + 0.7 * (late - late.mean()) / late.std()
        + rng.normal(0, 0.9, size=count)
    )
    prob = 1 / (1 + np.exp(-(logit + _calibrated_intercept(logit, TARGET_CHURN_RATE))))
    churned = (rng.random(size=count) < prob).astype(int)

    # Exactly round(8%) stale rows, so the freshness gate always has something to catch.
    stale = set(text_rng.sample(range(count), round(count * STALE_SHARE)))
    names = _account_names(text_rng, count)
    rows = []
    for i in range(count):
        if i in stale:
            age = dt.timedelta(days=text_rng.uniform(2.5, 45))
        else:
            age = dt.timedelta(minutes=text_rng.randint(0, 12 * 60 - 1))
        owner = text_rng.choice(OWNERS)
        rows.append(
            (
                f"ACC-{i + 1:04d}",
                names[i],
                text_rng.choice(INDUSTRIES),
                text_rng.choice(REGIONS),
                float(arr[i]),
                int(seats[i]),
                int(tenure[i]),
                int(logins[i]),
                int(tickets_90d[i]),
                int(nps[i]),
                int(late[i]),
                f"{owner}@{OWNER_DOMAIN}",
                int(churned[i]),
                _iso(now - age),
            )
        )
    return rows


# --- tickets --------------------------------------------------------------------------------------

# topic -> (subjects, bodies, priority weights for low/normal/high/urgent)
TOPICS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[int, int, int, int]]] = {
    "password_reset": (
        ("Can't reset my password", "Password reset email never arrives", "Locked out of my account"),
        (
            "I requested a password reset {n} times today but the email never shows up, not even in spam.",
            "Our admin {person} is locked out after too many attempts. How do we reset the password?",
            "The reset link says it has expired as soon as I click it. I need to log in before {weekday}.",
        ),
        (3, 5, 2, 0),
    ),
    "billing": (
        ("Invoice shows the wrong amount", "Billing error on latest invoice", "Charged twice this month"),
        (
            "Our invoice for {month} lists {seats} seats but we only have {seats_real}. Please correct it.",
            "We were charged twice for the {month} invoice. Our finance team needs a corrected invoice.",
            "The VAT number on our invoice is missing, so accounting can't book it. Can you reissue it?",
        ),
        (1, 5, 3, 1),
    ),
    "refund": (
        ("Refund request", "Requesting a refund for duplicate charge", "Please refund unused seats"),
        (
            "I was charged twice for our annual plan and would like a refund of the duplicate payment.",
            "We downgraded on {weekday} but were billed for the old plan. Please refund the difference.",
            "We cancelled {n} seats last month and were still billed for them. Can we get a refund?",
        ),
        (1, 5, 3, 1),
    ),
    "api_rate_limit": (
        ("API returning 429 Too Many Requests", "Hitting API rate limits", "Rate limit too low for our sync"),
        (
            "Since {weekday} our nightly sync gets HTTP 429 after roughly {n}00 requests. What are the limits?",
            "Our integration keeps hitting the API rate limit. Can the limit be raised for our account?",
            "We see 'rate limit exceeded' errors in bursts every morning. Is there a retry-after header we can use?",
        ),
        (1, 4, 4, 1),
    ),
    "sso": (
        ("SSO login failing", "SAML error when signing in", "Okta single sign-on broken"),
        (
            "Users get a SAML assertion error when logging in through Okta since {weekday}.",
            "Single sign-on stopped working after we rotated our IdP certificate. Nobody can log in.",
            "New hires are redirected back to the login page in a loop when they use SSO.",
        ),
        (0, 3, 5, 2),
    ),
    "data_export": (
        ("How do I export our data?", "Data export stuck", "Need a full CSV export"),
        (
            "We need a full export of all records as CSV for our auditors by {weekday}. How do we do that?",
            "The data export has been 'in progress' for {n} hours. Is it stuck?",
            "Is there a way to export reports automatically every week instead of downloading them by hand?",
        ),
        (3, 5, 1, 0),
    ),
    "slow_dashboard": (
        ("Dashboard very slow", "Reports take minutes to load", "Performance issues on dashboard"),
        (
            "The main dashboard takes over {n}0 seconds to load for our team. It used to be instant.",
            "Reports with more than a few filters time out. This started around {weekday}.",
            "Everything is sluggish in the afternoon (EU time). Is there a performance problem on your side?",
        ),
        (1, 5, 3, 1),
    ),
    "cancel_subscription": (
        ("Cancel our subscription", "How to cancel at renewal", "We want to stop our plan"),
        (
            "We have decided not to renew. Please cancel our subscription at the end of the current term.",
            "How do we cancel? We've moved to another tool and no longer need the {seats} seats.",
            "Budget cuts mean we need to cancel or downgrade before our renewal in {month}.",
        ),
        (1, 4, 4, 1),
    ),
    "add_seats": (
        ("Add more seats", "Need licences for new team", "Increase seat count"),
        (
            "We're onboarding a new team and need {n} more seats from {weekday}. What's the process?",
            "Can you add {seats} seats to our plan and prorate the cost on the next invoice?",
            "Our admin can't find where to buy extra licences in the billing page.",
        ),
        (4, 5, 1, 0),
    ),
    "salesforce_integration": (
        ("Salesforce integration not syncing", "Connecting to Salesforce", "Salesforce sync errors"),
        (
            "Contacts stopped syncing to Salesforce on {weekday}. The integration page shows a token error.",
            "How do we connect our Salesforce org? We want opportunities to sync both ways.",
            "The Salesforce integration creates duplicate contacts every time it runs.",
        ),
        (1, 5, 3, 1),
    ),
    "gdpr_deletion": (
        ("GDPR deletion request", "Right to erasure for a former employee", "Delete personal data"),
        (
            "Under GDPR we ask you to delete all personal data of our former employee {person}.",
            "A customer of ours exercised their right to erasure. How do we delete their records from your system?",
            "Please confirm how long you keep backups and when deleted personal data is purged from them.",
        ),
        (1, 4, 4, 1),
    ),
    "outage": (
        ("Service down?", "Getting 500 errors everywhere", "Outage - nobody can work"),
        (
            "Your app has been returning 500 errors for the last {n}0 minutes. Our whole team is blocked.",
            "Is there an outage? Nothing loads and the status page says all systems operational.",
            "We can't log in or reach the API since this morning. Please treat this as urgent.",
        ),
        (0, 0, 3, 7),
    ),
}

OPENERS = ("Hi,", "Hello support,", "Hi team,", "Good morning,", "Hello,", "")
CLOSERS = ("Thanks!", "Thanks in advance.", "Kind regards,", "Best,", "Cheers,", "")
CUSTOMER_FIRST = ("Anna", "Ben", "Carla", "Dev", "Elif", "Femi", "Grace", "Hugo", "Ines", "Jonas", "Keiko", "Luis")
CUSTOMER_LAST = ("Berg", "Costa", "Duarte", "Evans", "Fischer", "Garcia", "Haddad", "Ito", "Jensen", "Kowalski")
CUSTOMER_DOMAINS = ("acme-corp.example", "globex.example", "initech.example", "umbrella.example", "stark.example")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October")
PRIORITIES = ("low", "normal", "high", "urgent")
CHANNELS = ("email", "web", "chat", "phone")
STATUSES = ("open", "pending", "solved")
PII_SHARE = 0.22


def _contact_line(rng: random.Random, first: str, last: str) -> str:
    """A line with customer contact details: the redaction rule's target."""
    email = f"{first.lower()}.{last.lower()}@{rng.choice(CUSTOMER_DOMAINS)}"
    phone = f"+1 {rng.randint(200, 989)} 555 {rng.randint(0, 9999):04d}"
    return rng.choice(
        (
            f"You can reach me at {email}.",
            f"Call me on {phone} if that's quicker.",
            f"Best contact: {email} or {phone}.",
            f"Please reply to {email}, not the address on file.",
        )
    )


def _generate_tickets(count: int, account_ids: list[str], now: dt.datetime) -> list[tuple]:
    rng = random.Random(SEED + 1)
    topics = list(TOPICS)
    rows = []
    for i in range(count):
        topic = topics[i % len(topics)] if i < len(topics) else rng.choice(topics)  # every topic appears
        subjects, bodies, weights = TOPICS[topic]
        first, last = rng.choice(CUSTOMER_FIRST), rng.choice(CUSTOMER_LAST)
        seats_real = rng.randint(5, 120)
        core = rng.choice(bodies).format(
            n=rng.randint(2, 9),
            person=f"{rng.choice(CUSTOMER_FIRST)} {rng.choice(CUSTOMER_LAST)}",
            weekday=rng.choice(WEEKDAYS),
            month=rng.choice(MONTHS),
            seats=seats_real + rng.randint(3, 40),
            seats_real=seats_real,
        )
        parts = [rng.choice(OPENERS), core]
        if rng.random() < PII_SHARE:
            parts.append(_contact_line(rng, first, last))
        closer = rng.choice(CLOSERS)
        if closer:
            parts.append(f"{closer}\n{first}" if closer.endswith(",") else f"{closer} {first}")
        body = "\n\n".join(p for p in parts if p)

        created = now - dt.timedelta(minutes=rng.randint(30, 14 * 24 * 60))
        updated = created + (now - created) * rng.random()
        rows.append(
            (
                f"TCK-{i + 1:04d}",
                rng.choice(account_ids),
                rng.choice(subjects),
                body,
                rng.choices(PRIORITIES, weights=weights)[0],
                rng.choice(CHANNELS),
                rng.choices(STATUSES, weights=(6, 3, 1))[0],
                _iso(created),
                _iso(updated),
            )
        )
    return rows


# --- knowledge base -------------------------------------------------------------------------------

# (article_id, title, topic, body). Bodies are written to be pasted into a reply as-is.
KB_ARTICLES: tuple[tuple[str, str, str, str], ...] = (
    (
        "KB-001",
        "Resetting your password",
        "password_reset",
        (
            "You can reset your password from the sign-in page by choosing 'Forgot password' and entering your work "
            "email. The reset link is valid for 30 minutes, so please use the most recent email if you requested "
            "several. If the email doesn't arrive within 10 minutes, check your spam folder or ask your workspace "
            "admin to send a reset from the Users page."
        ),
    ),
    (
        "KB-002",
        "Unlocking an account after too many sign-in attempts",
        "password_reset",
        (
            "After 5 failed sign-in attempts an account is locked for 15 minutes to protect it. Your workspace admin "
            "can unlock it immediately from Settings > Users > Unlock. Once unlocked, we recommend resetting the "
            "password right away."
        ),
    ),
    (
        "KB-003",
        "Correcting an invoice or billing error",
        "billing",
        (
            "If an invoice shows the wrong seat count, amount, or VAT details, reply with the invoice number and the "
            "correct details. Our billing team will issue a corrected invoice within 2 business days and void the "
            "original. Corrected invoices also appear under Settings > Billing > Invoices."
        ),
    ),
    (
        "KB-004",
        "Refunds for duplicate or incorrect charges",
        "refund",
        (
            "We're sorry you were charged twice or billed incorrectly. Once we confirm the duplicate payment, we will "
            "refund the full amount to your original payment method within 5-10 business days. You'll receive a "
            "confirmation email with the refund reference as soon as it is issued."
        ),
    ),
    (
        "KB-005",
        "API rate limits and handling 429 responses",
        "api_rate_limit",
        (
            "The API allows 600 requests per minute per workspace. When you exceed it you'll get HTTP 429 Too Many "
            "Requests with a Retry-After header telling you how many seconds to wait. Spreading batch jobs over time "
            "and using the bulk endpoints usually removes rate limit errors; Enterprise plans can request a higher "
            "limit."
        ),
    ),
    (
        "KB-006",
        "Troubleshooting SSO and SAML login failures",
        "sso",
        (
            "Most SSO login failures come from an expired or rotated IdP certificate, or a mismatched entity ID. "
            "Upload the new certificate under Settings > Security > Single sign-on and confirm the ACS URL matches "
            "your identity provider (Okta, Azure AD, Google). Admins can always sign in with a password via the "
            "recovery link while SSO is being fixed."
        ),
    ),
    (
        "KB-007",
        "Exporting your data to CSV",
        "data_export",
        (
            "Admins can export all records as CSV from Settings > Data > Export. Large exports run in the background "
            "and we email a download link when they're ready, usually within an hour. Scheduled weekly exports can be "
            "set up from the same page."
        ),
    ),
    (
        "KB-008",
        "Improving dashboard and report performance",
        "slow_dashboard",
        (
            "Dashboards with many widgets or long date ranges can load slowly. Narrowing the date range, removing "
            "unused filters, and using saved reports instead of live ones usually makes them load in seconds. If "
            "everything is slow for your whole team, please check our status page and let us know the time it started."
        ),
    ),
    (
        "KB-009",
        "Cancelling or downgrading your subscription",
        "cancel_subscription",
        (
            "If you no longer need your plan, you can cancel or downgrade before renewal from Settings > Billing > "
            "Plan; the change takes effect at the end of your current term and you keep full access until then. Your "
            "data stays available for export for 30 days after cancellation. If budget is the reason, reply and we'll "
            "gladly look at options with you."
        ),
    ),
    (
        "KB-010",
        "Adding seats to your plan",
        "add_seats",
        (
            "Workspace admins can add seats or buy extra licences any time from Settings > Billing > Seats. New seats "
            "are available immediately and the cost is prorated on your next invoice. For more than 50 seats, your "
            "account manager can prepare a volume quote."
        ),
    ),
    (
        "KB-011",
        "Connecting and troubleshooting the Salesforce integration",
        "salesforce_integration",
        (
            "Connect Salesforce from Settings > Integrations > Salesforce using an account with API access. If sync "
            "stops with a token error, disconnect and reconnect to refresh the OAuth token. Duplicate contacts usually "
            "mean the matching rule is set to name instead of email; switch it to email and run a dedupe."
        ),
    ),
    (
        "KB-012",
        "GDPR data deletion and right to erasure",
        "gdpr_deletion",
        (
            "Admins can permanently delete a person's data from Settings > Privacy > Erasure requests. Deletion "
            "completes within 30 days, including removal from backups as they expire. We'll confirm in writing once "
            "the erasure request is complete."
        ),
    ),
    (
        "KB-013",
        "What to do during a service outage",
        "outage",
        (
            "If the app returns 500 errors or won't load, there may be an outage: we're alerted as soon as one starts "
            "and post updates on our status page every 30 minutes. Subscribing to the status page gets you notified "
            "when the incident is resolved. If your issue continues after the incident is closed, reply with the time "
            "and any error messages you see."
        ),
    ),
    (
        "KB-014",
        "Understanding your invoice",
        "billing",
        (
            "Each invoice lists your plan, seat count, billing period, and any prorated charges for seats added "
            "mid-term. Invoices are emailed to your billing contact and can be downloaded as PDF under Settings > "
            "Billing > Invoices. You can add a VAT number or purchase order reference there too."
        ),
    ),
    (
        "KB-015",
        "Setting up two-factor authentication",
        "password_reset",
        (
            "Two-factor authentication can be enabled under Profile > Security using any authenticator app. Admins can "
            "require it for the whole workspace. If you lose your device, use one of your backup codes or ask an admin "
            "to reset your second factor."
        ),
    ),
    (
        "KB-016",
        "Using webhooks instead of polling the API",
        "api_rate_limit",
        (
            "Webhooks push changes to your endpoint as they happen, so you don't need to poll the API and use up your "
            "rate limit. Configure them under Settings > Integrations > Webhooks and verify each delivery with the "
            "signing secret."
        ),
    ),
)


# --- build ----------------------------------------------------------------------------------------


def build_source_database(path: Path, *, now: dt.datetime, accounts: int = 400, tickets: int = 400) -> None:
    """(Re)create the demo CRM/helpdesk database at ``path``.

    Built in a temp file next to ``path`` and swapped in with ``os.replace`` so readers never see a
    half-written database.
    """
    path = Path(path)
    if accounts < 1 or tickets < 0:
        raise ValueError("accounts must be >= 1 and tickets >= 0")
    now = _as_utc(now)
    path.parent.mkdir(parents=True, exist_ok=True)

    account_rows = _generate_accounts(accounts, now)
    ticket_rows = _generate_tickets(tickets, [row[0] for row in account_rows], now)

    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        conn = sqlite3.connect(tmp)
        try:
            with conn:
                conn.executescript(SCHEMA)
                conn.executemany(f"INSERT INTO accounts VALUES ({', '.join('?' * 14)})", account_rows)
                conn.executemany(f"INSERT INTO tickets VALUES ({', '.join('?' * 9)})", ticket_rows)
                conn.executemany(
                    "INSERT INTO kb_articles (article_id, title, topic, body) VALUES (?, ?, ?, ?)", KB_ARTICLES
                )
        finally:
            conn.close()
        # Journal files left by the old database must not be replayed against the new one.
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
