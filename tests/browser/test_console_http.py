"""The console in-process (starlette's TestClient on the real app, real PostgreSQL): every page's HTML with data
in it, human feedback through the form, the CSRF and role refusals, sign-in with auth on, and `[gateway.ui]`."""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb
from starlette.testclient import TestClient

from lsd.api.console.render import raw
from lsd.api.console.signin import _next
from lsd.app import build_app
from lsd.auth import new_key
from lsd.config import parse
from lsd.store import keys
from tests.browser.console_data import AUTH, CONFIG, Traffic, send_traffic
from tests.support.gateway import run_lsd
from tests.support.polling import count, eventually

ROOT = Path(__file__).resolve().parents[2]
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def client_for(config: str, database_url: str) -> TestClient:
    return TestClient(build_app(parse(config, base_dir=ROOT), database_url), follow_redirects=False)


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def make_key(database_url: str, role: str | None) -> tuple[str, str]:
    made = new_key()
    with psycopg.connect(database_url, autocommit=True) as conn:
        keys.insert_key(
            conn,
            made.public_id,
            made.secret_sha256,
            description="console",
            organization=None,
            workspace=None,
            console_role=role,
        )
    return made.public_id, made.token


@pytest.fixture
def open_console(database_url: str) -> Iterator[tuple[TestClient, Traffic]]:
    with client_for(CONFIG, database_url) as client:
        yield client, send_traffic(client, database_url)


def test_every_page_renders_the_stored_data(open_console: tuple[TestClient, Traffic]) -> None:
    client, traffic = open_console
    first = traffic.inference_ids[0]
    pages = {
        "/ui/": ["Overview", "chat", "wobbly", "echo", "broken", "<svg", "Time to first token"],
        "/ui/?range=1h": ["inferences"],
        "/ui/?range=30d": ["inferences"],
        "/ui/functions": ["chat", "wobbly"],
        "/ui/functions/chat": ["variant-row", "thumbs", "score", "95 %"],
        "/ui/inferences": [str(first), "alice"[:0]],
        "/ui/inferences?tag=user%3Dalice": [str(first)],
        "/ui/inferences?function=chat&variant=a&metric=thumbs&value=true": [],
        f"/ui/inferences/{first}": ["echo: hello 0", "thumbs", "0.75", "raw request"],
        f"/ui/inferences/{traffic.failing_inference_id}": ["status-error", "broken", "backup"],
        f"/ui/episodes/{traffic.episode_id}": [str(traffic.inference_ids[5])],
        "/ui/evaluations": ["Evaluation runs"],
        "/ui/datasets": ["Datasets"],
        "/ui/batches": ["Batches"],
        "/ui/keys": ["Rate-limit buckets", "Create a key"],
    }
    for path, expected in pages.items():
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert response.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in response.headers["content-security-policy"]
        for text in expected:
            assert text in response.text, (path, text)
    # The variant's share and the overview's totals come from the statistics tables: 6 inferences of `chat`.
    assert re.search(r"<b>7</b><span>inferences</span>", client.get("/ui/").text)
    tagged = client.get("/ui/inferences?tag=user%3Dalice").text
    assert str(first) in tagged and str(traffic.inference_ids[1]) not in tagged


def test_keyset_paging_walks_every_inference(
    open_console: tuple[TestClient, Traffic], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, traffic = open_console
    monkeypatch.setattr("lsd.api.console.inferences.PAGE_SIZE", 3)
    seen: list[str] = []
    url: str | None = "/ui/inferences?function=chat"
    while url:
        html = client.get(url).text
        seen += re.findall(r'href="/ui/inferences/([0-9a-f-]{36})"', html)
        found = re.search(r'href="([^"]+)" id="next-page"', html)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert sorted(seen) == sorted(str(i) for i in traffic.inference_ids)


def test_bad_filters_and_unknown_ids_are_html_pages_naming_the_field(open_console: tuple[TestClient, Traffic]) -> None:
    client, _ = open_console
    response = client.get("/ui/inferences?episode=nope")
    assert response.status_code == 400 and "episode_id" in response.text and "<html" in response.text
    assert client.get("/ui/inferences?tag=novalue").status_code == 400
    assert client.get("/ui/?range=2y").status_code == 400
    assert client.get("/ui/inferences/01890000-0000-7000-8000-000000000000").status_code == 404
    assert client.get("/ui/functions/nothing").status_code == 404


def test_human_feedback_form_stores_through_the_feedback_path(
    open_console: tuple[TestClient, Traffic], database_url: str
) -> None:
    client, traffic = open_console
    target = traffic.inference_ids[4]
    page = client.get(f"/ui/inferences/{target}")
    token = csrf_of(page.text)
    assert "lsd_console_csrf" in page.headers["set-cookie"] and "samesite=strict" in page.headers["set-cookie"].lower()
    for kind, metric, value in (
        ("boolean", "thumbs", "true"),
        ("float", "score", "0.25"),
        ("comment", "", "looks right <b>"),
        ("demonstration", "", "the ideal answer"),
        ("demonstration", "", "[Draft] a text that starts with a bracket"),
    ):
        form = {
            "csrf": token,
            "kind": kind,
            "metric_name": metric,
            "value": value,
            "episode_id": str(traffic.episode_id),
        }
        response = client.post(f"/ui/inferences/{target}/feedback", data=form)
        assert response.status_code == 303, response.text
        assert response.headers["location"].startswith(f"/ui/inferences/{target}?added=")
    query = "SELECT count(*) FROM {} WHERE target_id = %s"
    assert eventually(lambda: count(database_url, query.format("boolean_metric_feedback") + " AND value", target))
    assert eventually(lambda: count(database_url, query.format("float_metric_feedback") + " AND value = 0.25", target))
    assert eventually(lambda: count(database_url, query.format("comment_feedback"), target))
    assert eventually(
        lambda: count(database_url, "SELECT count(*) FROM demonstration_feedback WHERE inference_id = %s", target)
    )
    assert eventually(
        lambda: count(
            database_url,
            "SELECT count(*) FROM demonstration_feedback WHERE inference_id = %s AND value::text LIKE '%%[Draft]%%'",
            target,
        )
    )
    shown = client.get(f"/ui/inferences/{target}").text
    assert "looks right &lt;b&gt;" in shown and "the ideal answer" in shown
    # The notice after a form names the feedback id it got, never a link's own text.
    notice = client.get(f"/ui/inferences/{target}?added=Your+session+expired:+sign+in+at+evil.example").text
    assert "evil.example" not in notice and 'class="ok"' not in notice
    # No CSRF token, or another one: refused, nothing stored.
    for bad in ({}, {"csrf": "x" * 43}):
        form = {**bad, "kind": "boolean", "metric_name": "thumbs", "value": "false"}
        assert client.post(f"/ui/inferences/{target}/feedback", data=form).status_code == 403
    # An invalid value is the feedback path's own 400.
    form = {"csrf": token, "kind": "float", "metric_name": "score", "value": "lots"}
    assert client.post(f"/ui/inferences/{target}/feedback", data=form).status_code == 400
    assert count(database_url, query.format("boolean_metric_feedback") + " AND NOT value", target) == 0


def test_html_is_escaped(open_console: tuple[TestClient, Traffic]) -> None:
    client, _ = open_console
    answer = client.post(
        "/inference",
        json={
            "function_name": "chat",
            "input": {"messages": [{"role": "user", "content": "<script>alert(1)</script>"}]},
            "tags": {"x": "<img src=x onerror=alert(1)>"},
        },
    ).json()
    page = eventually(
        lambda: (r := client.get(f"/ui/inferences/{answer['inference_id']}")).status_code == 200 and r.text
    )
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in page


def test_console_off_is_404(database_url: str) -> None:
    with client_for(CONFIG + "[gateway.ui]\nenabled = false\n", database_url) as client:
        assert client.get("/ui/").status_code == 404
        assert client.get("/ui/static/console.css").status_code == 404


def test_sign_in_roles_and_sign_out_with_auth_on(database_url: str) -> None:
    admin_id, admin_key = make_key(database_url, "admin")
    reader_id, reader_key = make_key(database_url, "read-only")
    _, api_only_key = make_key(database_url, None)
    with client_for(CONFIG + AUTH, database_url) as client:
        # Without a session: sent to sign in; a form post is refused; the API still wants its bearer key.
        response = client.get("/ui/functions")
        assert response.status_code == 303 and response.headers["location"] == "/ui/login?next=%2Fui%2Ffunctions"
        assert client.post("/ui/keys", data={"description": "x"}).status_code == 401
        assert client.get("/v1/evaluations/runs").status_code == 401
        login = client.get("/ui/login")
        assert login.status_code == 200
        token = csrf_of(login.text)
        # Keys that cannot sign in all get one answer; the login form needs its CSRF token.
        for key in ("", "sk-lsd-nonsense", api_only_key, admin_key + "x"):
            refused = client.post("/ui/login", data={"csrf": token, "key": key, "next": "/ui/"})
            assert refused.status_code == 401 and "cannot sign in" in refused.text
        assert client.post("/ui/login", data={"key": admin_key}).status_code == 401
        # read-only: every page, no feedback form, no key management.
        signed = client.post("/ui/login", data={"csrf": token, "key": reader_key, "next": "/ui/functions"})
        assert signed.status_code == 303 and signed.headers["location"] == "/ui/functions"
        cookie = signed.headers["set-cookie"]
        assert "lsd_console_session=" in cookie and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
        assert reader_key.split("-")[3] not in cookie
        assert count(database_url, "SELECT count(*) FROM console_sessions WHERE public_id = %s", reader_id) == 1
        keys_page = client.get("/ui/keys")
        assert keys_page.status_code == 200 and "Create a key" not in keys_page.text
        session_csrf = csrf_of(keys_page.text)
        assert client.post("/ui/keys", data={"csrf": session_csrf, "description": "nope"}).status_code == 403
        inference = client.post(
            "/inference",
            json={"function_name": "chat", "input": {"messages": [{"role": "user", "content": "hi"}]}},
            headers={"authorization": f"Bearer {admin_key}"},
        ).json()["inference_id"]
        page = eventually(lambda: (r := client.get(f"/ui/inferences/{inference}")).status_code == 200 and r.text)
        assert "feedback-form" not in page and "read-only console role cannot add feedback" in page
        form = {"csrf": session_csrf, "kind": "comment", "value": "no"}
        assert client.post(f"/ui/inferences/{inference}/feedback", data=form).status_code == 403
        signed_out = client.post("/ui/logout", data={"csrf": session_csrf})
        assert signed_out.status_code == 303 and signed_out.headers["location"] == "/ui/login"
        assert count(database_url, "SELECT count(*) FROM console_sessions WHERE public_id = %s", reader_id) == 0
        assert client.get("/ui/keys").status_code == 303
        # admin: creates a key (shown once), disables it; disabling the admin's own key ends its session.
        client.post("/ui/login", data={"csrf": token, "key": admin_key, "next": "/ui/keys"})
        admin_csrf = csrf_of(client.get("/ui/keys").text)
        created = client.post(
            "/ui/keys", data={"csrf": admin_csrf, "description": "made in the console", "console_role": ""}
        )
        assert created.status_code == 200
        new_token = re.search(r'id="new-key">(sk-lsd-[^<]+)<', created.text)
        assert new_token is not None
        new_id = new_token.group(1).split("-")[2]
        listed = client.get("/ui/keys").text
        assert new_id in listed and new_token.group(1) not in listed
        assert client.post(f"/ui/keys/{new_id}/disable", data={"csrf": admin_csrf}).status_code == 303
        assert (
            count(
                database_url, "SELECT count(*) FROM api_keys WHERE public_id = %s AND disabled_at IS NOT NULL", new_id
            )
            == 1
        )
        assert client.post(f"/ui/keys/{admin_id}/disable", data={"csrf": admin_csrf}).status_code == 303
        assert client.get("/ui/keys").status_code == 303


def test_function_page_shows_the_experiments_current_allocation(
    open_console: tuple[TestClient, Traffic], database_url: str
) -> None:
    client, _ = open_console
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO experiment_allocations (function_name, weights, phase, evidence, stopped, winner, stopped_at, "
            "fingerprint, updated_at) VALUES ('chat', '{\"a\": 0.8, \"b\": 0.2}', 'stopped', "
            '\'{"a": {"count": 40, "mean": 0.9, "lower": 0.8, "upper": 0.95, "eliminated": false}}\', true, \'a\', '
            "now(), 'x', now())"
        )
    page = client.get("/ui/functions/chat").text
    assert "Current allocation" in page and "winner <b>a</b>" in page
    assert "80.0 %" in page and "[0.800, 0.950]" in page


def test_evaluation_dataset_and_batch_pages_with_data(
    open_console: tuple[TestClient, Traffic], database_url: str
) -> None:
    client, traffic = open_console
    created = client.post(
        "/v1/datasets/golden/datapoints",
        json={
            "datapoints": [
                {
                    "type": "chat",
                    "function_name": "chat",
                    "input": {"messages": [{"role": "user", "content": "what is LSD?"}]},
                    "output": [{"type": "text", "text": "a gateway"}],
                    "name": "first",
                }
            ]
        },
    )
    assert created.status_code == 200, created.text
    run_id = "01890000-0000-7000-8000-0000000000aa"
    summary = {
        "datapoints": 2,
        "inference_failures": 0,
        "cost": 0.5,
        "evaluators": [
            {
                "name": "exact",
                "output_type": "boolean",
                "n": 2,
                "mean": 0.5,
                "ci_low": 0.09,
                "ci_high": 0.91,
                "failures": 0,
                "human": 1,
                "cutoff": 0.4,
                "passed": True,
            },
        ],
    }
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO inference_evaluation_runs (id, created_at, evaluation_name, function_name, variant_name, "
            "status, summary) VALUES (%s, now(), 'quality', 'chat', 'a', 'completed', %s)",
            (run_id, Jsonb(summary)),
        )
        for n, (value, source) in enumerate(((True, "evaluator"), (False, "human"))):
            conn.execute(
                "INSERT INTO inference_evaluation_results (id, created_at, evaluation_run_id, datapoint_id, "
                "inference_id, evaluator_name, metric_name, value, source, input, output) VALUES "
                "(%s, now(), %s, %s, %s, 'exact', 'lsd::evaluation::quality::evaluator::exact', %s, %s, '{}', %s)",
                (
                    f"01890000-0000-7000-8000-0000000001{n:02d}",
                    run_id,
                    f"dp-{n}",
                    traffic.inference_ids[n],
                    Jsonb(value),
                    source,
                    Jsonb([{"type": "text", "text": f"answer {n}"}]),
                ),
            )
    runs = client.get("/ui/evaluations").text
    assert run_id in runs and "quality" in runs
    run = client.get(f"/ui/evaluations/{run_id}").text
    assert "[0.090, 0.910]" in run and "dp-1" in run and "human" in run and str(traffic.inference_ids[0]) in run
    datasets = client.get("/ui/datasets").text
    assert "golden" in datasets
    dataset = client.get("/ui/datasets/golden").text
    assert "a gateway" in dataset and "first" in dataset
    assert client.get("/ui/batches/01890000-0000-7000-8000-000000000000").status_code == 404


def test_keys_cli_gives_a_console_role(database_url: str) -> None:
    env = {"LSD_DATABASE_URL": database_url}
    made = run_lsd("keys", "create", "--description", "ops", "--console-role", "admin", env=env, timeout=180)
    assert made.returncode == 0, made.stderr
    public_id = made.stdout.strip().split("-")[2]
    listed = run_lsd("keys", "list", "--json", env=env, timeout=180)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["console_role"] for r in rows if r["public_id"] == public_id] == ["admin"]
    refused = run_lsd("keys", "create", "--console-role", "owner", env=env, timeout=180)
    assert refused.returncode == 2 and "owner" in refused.stderr


def test_ui_without_a_slash_and_unknown_console_paths(database_url: str) -> None:
    with client_for(CONFIG + AUTH, database_url) as client:
        bare = client.get("/ui")
        assert bare.status_code in (307, 308) and bare.headers["location"].endswith("/ui/")
        assert client.get("/ui/").status_code == 303  # to sign in
        assert client.get("/ui/static/console.css").status_code == 200
        unknown = client.get("/ui/no-such-page")
        assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("text/html")
        assert client.get("/no-such-route").status_code == 401  # outside /ui the API's rule stands


def test_least_privilege_daemon_role_signs_in_but_cannot_write_keys(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute((ROOT / "sql" / "roles.sql").read_text().encode())
    params = conninfo_to_dict(database_url)
    params["user"] = "lsd_daemon"
    daemon_url = make_conninfo("", **params)
    admin_id, admin_key = make_key(database_url, "admin")
    with client_for(CONFIG + AUTH, daemon_url) as client:
        token = csrf_of(client.get("/ui/login").text)
        assert client.post("/ui/login", data={"csrf": token, "key": admin_key, "next": "/ui/keys"}).status_code == 303
        page = client.get("/ui/keys")
        assert page.status_code == 200 and admin_id in page.text
        csrf = csrf_of(page.text)
        refused = client.post("/ui/keys", data={"csrf": csrf, "description": "x", "console_role": ""})
        assert refused.status_code == 403 and "lsd keys" in refused.text
        assert client.post(f"/ui/keys/{admin_id}/disable", data={"csrf": csrf}).status_code == 403
    assert count(database_url, "SELECT count(*) FROM api_keys") == 1


def test_feedback_filter_and_cost_say_what_is_stored(database_url: str) -> None:
    """Episode-level feedback from an inference's page goes to that inference's episode whatever the form says; a
    boolean metric filter honours `!=` (and refuses `<`); a cost no provider priced shows as unknown, not $0."""
    config = CONFIG + '\n[metrics.resolved]\ntype = "boolean"\noptimize = "max"\nlevel = "episode"\n'
    with client_for(config, database_url) as client:
        traffic = send_traffic(client, database_url)
        target = traffic.inference_ids[0]
        token = csrf_of(client.get(f"/ui/inferences/{target}").text)
        forged = "01890000-0000-7000-8000-000000000000"
        form = {"csrf": token, "kind": "boolean", "metric_name": "resolved", "value": "true", "episode_id": forged}
        assert client.post(f"/ui/inferences/{target}/feedback", data=form).status_code == 303
        query = "SELECT target_id::text FROM boolean_metric_feedback WHERE metric_name = 'resolved'"
        assert eventually(lambda: count(database_url, query.replace("target_id::text", "count(*)")) == 1)
        with psycopg.connect(database_url) as conn:
            assert conn.execute(query).fetchall() == [(str(traffic.episode_id),)]

        listed = client.get("/ui/inferences?function=chat&metric=thumbs&op=%21%3D&value=true").text
        shown = set(re.findall(r'href="/ui/inferences/([0-9a-f-]{36})"', listed))
        assert shown == {str(traffic.inference_ids[1])}  # the one rated false
        assert client.get("/ui/inferences?metric=thumbs&op=%3C&value=true").status_code == 400

        overview = client.get("/ui/?range=24h").text
        tile = overview[overview.index("<span>cost</span>") - 80 : overview.index("<span>cost</span>")]
        assert tile.endswith("<b>\N{EN DASH}</b>"), tile  # an unpriced model's cost is unknown, not $0
        with psycopg.connect(database_url) as conn:  # as a replica older than migration 17 folds a priced bucket
            conn.execute("UPDATE inference_by_function_statistics SET cost = 0.25, priced_count = 0")
        overview = client.get("/ui/?range=24h").text
        tile = overview[overview.index("<span>cost</span>") - 80 : overview.index("<span>cost</span>")]
        assert "<b>$0.25" in tile or "<b>$0.5" in tile, tile  # a cost it holds is known, whoever folded it


def test_captions_ids_and_the_episode_feedback_notice(open_console: tuple[TestClient, Traffic]) -> None:
    """The range picker says which buckets it draws; ids in lists end with their random part (a UUIDv7 starts with
    its timestamp); an expired sign-out form answers a console page, not JSON."""
    client, traffic = open_console
    assert "UTC 6-hour buckets" in client.get("/ui/?range=7d").text
    assert "traffic in UTC hours, latency in 5-minute buckets" in client.get("/ui/?range=1h").text
    listed = client.get("/ui/inferences?function=chat").text
    assert f">\N{HORIZONTAL ELLIPSIS}{str(traffic.inference_ids[0])[-12:]}</a>" in listed
    gone = client.post("/ui/logout", data={"csrf": "x" * 43})
    assert gone.status_code in (303, 403) and "application/json" not in gone.headers["content-type"]


def test_a_feedback_form_that_cannot_be_recorded_keeps_what_was_typed(open_console: tuple[TestClient, Traffic]) -> None:
    """A bad value (malformed JSON in a long demonstration, a boolean that is not true/false) answers the inference's
    own page, 400, with the message above the form and the form filled as it was, not a dead-end error page."""
    client, traffic = open_console
    target = traffic.inference_ids[0]
    token = csrf_of(client.get(f"/ui/inferences/{target}").text)
    typed = "{not json, but a long demonstration I do not want to type again"
    form = {"csrf": token, "kind": "demonstration", "metric_name": "", "value": typed}
    answer = client.post(f"/ui/inferences/{target}/feedback", data=form)
    assert answer.status_code == 400
    assert f'action="/ui/inferences/{target}/feedback"' in answer.text, answer.text[-3000:]
    assert "Not recorded: value: malformed JSON" in answer.text
    assert html.escape(typed, quote=False) in answer.text and '<option value="demonstration" selected>' in answer.text
    form = {"csrf": token, "kind": "boolean", "metric_name": "thumbs", "value": "TRUE"}
    answer = client.post(f"/ui/inferences/{target}/feedback", data=form)
    assert answer.status_code == 400 and "a boolean metric takes true or false" in answer.text
    assert '<option value="thumbs" data-type="boolean" selected>' in answer.text


@pytest.mark.parametrize(
    ("asked", "goes"),
    [
        ("/ui/functions?range=7d", "/ui/functions?range=7d"),
        ("/ui", "/ui"),
        ("/ui/../../etc", "/ui/"),
        ("/ui/%2e%2e/metrics", "/ui/"),
        ("/uix", "/ui/"),
        ("//evil.example/ui/", "/ui/"),
        ("https://evil.example/ui/", "/ui/"),
        (None, "/ui/"),
    ],
)
def test_after_signing_in_only_console_paths_are_followed(asked: str | None, goes: str) -> None:
    assert _next(asked) == goes


def test_an_evaluators_boolean_metric_gets_its_wilson_interval(database_url: str) -> None:
    """`lsd evaluate` records each evaluator under a metric of its own (not in [metrics]): six passes of six are
    [0.610, 1.000], as the run page says, not a certain [1.000, 1.000]."""
    evaluation = '\n[evaluations.qa]\nfunction_name = "chat"\n[evaluations.qa.evaluators.exact]\ntype = "exact_match"\n'
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO variant_metric_statistics (function_name, variant_name, metric_name, feedback_count, "
            "value_sum, value_sum_squares) VALUES ('chat', 'a', 'lsd::evaluation::qa::evaluator::exact', 6, 6, 6)"
        )
    with client_for(CONFIG + evaluation, database_url) as client:
        page = client.get("/ui/functions/chat").text
    assert "[0.610, 1.000]" in page, page[page.find("Metrics") :][:2000]


def test_an_inference_whose_every_attempt_failed_shows_its_errors(database_url: str) -> None:
    """No inference row is written when every attempt fails: its page shows the attempts and their errors (it was a
    404, so a failure in the overview could not be read anywhere in the console)."""
    failing = (
        '\n[models.down]\nrouting = ["broken"]\n[models.down.providers.broken]\ntype = "dummy"\nmodel_name = "error"\n'
    )
    with client_for(CONFIG + failing, database_url) as client:
        answer = client.post(
            "/inference", json={"model_name": "down", "input": {"messages": [{"role": "user", "content": "hi"}]}}
        )
        assert answer.status_code == 502, answer.text
        [[inference_id]] = eventually(
            lambda: query_rows(
                database_url, "SELECT DISTINCT inference_id FROM model_inferences WHERE model_name = 'down'"
            )
        )
        page = client.get(f"/ui/inferences/{inference_id}")
    assert page.status_code == 200, page.text
    assert "every attempt failed" in page.text and "tensorzero::default" in page.text
    assert "broken" in page.text and 'class="attempt status-error"' in page.text


def query_rows(database_url: str, statement: str) -> list[tuple[object, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(statement).fetchall()


def test_images_in_an_input_are_a_note_of_their_size(database_url: str) -> None:
    """An image's base64 (in the input and in each attempt's raw request) is shown as its size, not as megabytes of
    text: the page stays light whatever the photos."""
    image = base64.b64encode(bytes(range(256)) * 200).decode()  # 50 KiB
    content = [{"type": "text", "text": "what is this?"}, {"type": "file", "mime_type": "image/png", "data": image}]
    with client_for(CONFIG, database_url) as client:
        answer = client.post(
            "/inference", json={"function_name": "chat", "input": {"messages": [{"role": "user", "content": content}]}}
        )
        assert answer.status_code == 200, answer.text
        page = eventually(
            lambda: (r := client.get(f"/ui/inferences/{answer.json()['inference_id']}")).status_code == 200 and r.text
        )
    at = page.find(image[:2000])
    assert at < 0, page[max(0, at - 300) : at + 100]
    assert "(base64 data, 50 KiB: not shown)" in page
    assert "what is this?" in page


def test_a_long_run_of_letters_is_text_not_a_file() -> None:
    """Only base64 of binary data (it holds `+` or `/`) is shortened: a long token a model was asked to repeat
    stays readable in the raw payloads."""
    token = "EXFIL" + "a1B2c3" * 400
    assert raw(f'{{"content": "{token}"}}') == f'{{"content": "{token}"}}'
    image = base64.b64encode(bytes(range(256)) * 8).decode()
    assert (
        raw(f'{{"url": "data:image/png;base64,{image}"}}')
        == '{"url": "data:image/png;base64,(base64 data, 2 KiB: not shown)"}'
    )
