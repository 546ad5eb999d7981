"""The local state file: what it accepts, and every problem reported at once."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from controller.localspec import LocalConfigError, LocalSpec, parse_local_file, parse_local_text
from controller.snapshot import Mode

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mwm-local.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(LocalConfigError) as caught:
        parse_local_file(path)
    return caught.value.problems


def test_seed_compatible_minimal_file_is_accepted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        spec:
          services:
            - name: api
              namespace: shop
              critical: true
            - name: search
              namespace: shop
              critical: false
        """,
    )
    spec = parse_local_file(path)
    assert [
        (s.namespace, s.name, s.critical, s.min_ready, s.probe) for s in spec.spec.services
    ] == [
        ("shop", "api", True, 1, None),
        ("shop", "search", False, 1, None),
    ]
    assert spec.spec.maintenance is None
    assert spec.spec.windows == ()


def test_full_file_in_the_servicechecker_shape(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        apiVersion: maintenance.mamrezb.com/v1alpha1
        kind: ServiceChecker
        metadata: {name: local, namespace: default}
        spec:
          services:
            - name: api
              critical: true
              minReady: 1
              probe:
                http: {url: "http://127.0.0.1:8000/healthz", expectStatus: [200, 204]}
                intervalSeconds: 5
                timeoutSeconds: 2
                failureThreshold: 3
                successThreshold: 1
            - name: db
              probe:
                tcp: {host: 127.0.0.1, port: 5432}
          maintenance: {enabled: true, reason: "Upgrading", until: "2026-12-01T10:00:00+01:00"}
          windows:
            - {start: "2026-12-01T08:00:00Z", end: "2026-12-01T10:00:00Z", reason: "DB upgrade"}
        """,
    )
    spec = parse_local_file(path).spec
    api, db = spec.services
    assert api.probe is not None
    assert api.probe.http is not None
    assert api.probe.http.expect_status == frozenset({200, 204})
    assert (api.probe.interval_seconds, api.probe.failure_threshold) == (5, 3)
    assert db.probe is not None
    assert db.probe.tcp is not None
    assert (db.probe.tcp.host, db.probe.tcp.port) == ("127.0.0.1", 5432)
    assert db.probe.http is None
    assert spec.maintenance is not None
    assert spec.maintenance.enabled
    assert spec.maintenance.until == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert spec.maintenance.until.utcoffset() == timedelta(hours=1)
    assert spec.windows[0].start == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert spec.windows[0].reason == "DB upgrade"


def test_the_demo_file_is_valid() -> None:
    spec = parse_local_file(REPO / "demo" / "mwm-local.yaml").spec
    app, search = spec.services
    assert (app.name, app.critical) == ("demo-app", True)
    assert app.probe is not None
    assert app.probe.http is not None
    assert app.probe.http.url == "http://127.0.0.1:8000/healthz"
    assert (search.name, search.critical) == ("demo-search", False)
    assert search.probe is not None
    assert search.probe.tcp is not None
    assert spec.maintenance is not None
    assert not spec.maintenance.enabled


@pytest.mark.parametrize(
    ("metadata", "service_namespace", "expected"),
    [
        pytest.param("", "", "default", id="no-metadata-empty"),
        pytest.param("", None, "default", id="no-metadata-missing"),
        pytest.param("metadata: {namespace: shop}", "", "shop", id="metadata-empty"),
        pytest.param("metadata: {namespace: shop}", None, "shop", id="metadata-missing"),
        pytest.param("metadata: {namespace: shop}", "ops", "ops", id="explicit-wins"),
    ],
)
def test_empty_namespace_defaults(
    tmp_path: Path, metadata: str, service_namespace: str | None, expected: str
) -> None:
    namespace = "" if service_namespace is None else f", namespace: '{service_namespace}'"
    path = write(tmp_path, f"{metadata}\nspec:\n  services:\n    - {{name: api{namespace}}}\n")
    (service,) = parse_local_file(path).spec.services
    assert service.namespace == expected


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        spec:
          services:
            - name: Not_A_Label
              critical: true
            - name: web
              minready: 2
          maintenance: {enabled: true, until: "2026-12-01T10:00:00"}
        """,
    )
    problems = problems_of(path)
    assert len(problems) == 3, problems
    name, unknown, naive = problems
    assert name.startswith(f"{path}: spec.services[0].name: ")
    assert "DNS-1123" in name
    assert unknown.startswith(f"{path}: spec.services[1].minready: unknown field")
    assert naive.startswith(f"{path}: spec.maintenance.until: ")
    assert "time zone" in naive


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        spec:
          services:
            - name: api
              critical: [true
        """,
    )
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: line 5, column 1: invalid YAML")


def test_duplicate_yaml_keys_are_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        spec:
          services: []
          services: [{name: api}]
        """,
    )
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: line 3, column 3: invalid YAML")
    assert "duplicate key 'services'" in problem


@pytest.mark.parametrize(
    "until",
    [
        pytest.param('"2026-12-01T10:00:00"', id="quoted"),
        pytest.param("2026-12-01T10:00:00", id="yaml-timestamp"),
    ],
)
def test_naive_time_is_an_error(tmp_path: Path, until: str) -> None:
    path = write(tmp_path, f"spec:\n  maintenance: {{enabled: true, until: {until}}}\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: spec.maintenance.until: time ")
    assert "has no time zone" in problem


@pytest.mark.parametrize(
    "until",
    [
        pytest.param("tomorrow", id="word"),
        pytest.param("1764583200", id="epoch"),
        pytest.param("2026-12-01", id="date-only"),
        pytest.param('"2026-W48-2T10:00Z"', id="iso-week"),
        pytest.param('"20261201T1000Z"', id="basic"),
        pytest.param('"2026-12-01 10:00:00Z"', id="space"),
        pytest.param('"2026-12-01T10:00Z"', id="no-seconds"),
        pytest.param('"2026-12-01T10:00:00+0100"', id="offset-no-colon"),
        pytest.param('"2026-02-30T10:00:00Z"', id="no-such-day"),
    ],
)
def test_time_must_be_rfc3339(tmp_path: Path, until: str) -> None:
    path = write(tmp_path, f"spec:\n  maintenance: {{enabled: true, until: {until}}}\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: spec.maintenance.until: ")
    assert "expected an RFC 3339 time such as 2026-12-01T10:00:00Z" in problem
    assert "Z or ±HH:MM" in problem


@pytest.mark.parametrize(
    "start",
    [
        pytest.param('"2026-W48-2T10:00Z"', id="iso-week"),
        pytest.param('"2026-12-01"', id="date-only"),
        pytest.param('"2026-12-01T10:00:00"', id="naive"),
    ],
)
def test_window_times_must_be_rfc3339(tmp_path: Path, start: str) -> None:
    path = write(tmp_path, f"spec:\n  windows: [{{start: {start}, end: '2026-12-02T10:00:00Z'}}]\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: spec.windows[0].start: ")
    assert "RFC 3339" in problem or "has no time zone" in problem


@pytest.mark.parametrize(
    ("until", "expected"),
    [
        pytest.param('"2026-12-01t10:00:00z"', datetime(2026, 12, 1, 10, tzinfo=UTC), id="lower"),
        pytest.param(
            '"2026-12-01T10:00:00.25+00:00"',
            datetime(2026, 12, 1, 10, 0, 0, 250000, tzinfo=UTC),
            id="fraction",
        ),
        pytest.param(
            '" 2026-12-01T10:00:00Z "', datetime(2026, 12, 1, 10, tzinfo=UTC), id="spaces"
        ),
    ],
)
def test_rfc3339_forms_are_accepted(tmp_path: Path, until: str, expected: datetime) -> None:
    path = write(tmp_path, f"spec:\n  maintenance: {{until: {until}}}\n")
    maintenance = parse_local_file(path).spec.maintenance
    assert maintenance is not None
    assert maintenance.until == expected


def test_unquoted_timestamp_with_zone_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "spec:\n  maintenance: {until: 2026-12-01T10:00:00-05:00}\n")
    maintenance = parse_local_file(path).spec.maintenance
    assert maintenance is not None
    assert maintenance.until == datetime(2026, 12, 1, 10, tzinfo=timezone(timedelta(hours=-5)))


@pytest.mark.parametrize(
    "end",
    [
        pytest.param("2026-12-01T07:00:00Z", id="before"),
        pytest.param("2026-12-01T08:00:00Z", id="equal"),
    ],
)
def test_window_end_must_be_after_start(tmp_path: Path, end: str) -> None:
    path = write(
        tmp_path,
        f"""
        spec:
          windows:
            - {{start: "2026-12-01T09:00:00Z", end: "2026-12-01T10:00:00Z"}}
            - {{start: "2026-12-01T08:00:00Z", end: "{end}"}}
        """,
    )
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: spec.windows[1]: end ")
    assert "must be after start" in problem


@pytest.mark.parametrize(("text", "seconds"), [("3600", 3600), ("0", 0), ("2592000", 2592000)])
def test_window_announce_seconds(tmp_path: Path, text: str, seconds: int) -> None:
    path = write(
        tmp_path,
        f"""
        spec:
          windows:
            - start: "2026-12-01T09:00:00Z"
              end: "2026-12-01T10:00:00Z"
              announceSeconds: {text}
            - {{start: "2026-12-02T09:00:00Z", end: "2026-12-02T10:00:00Z"}}
        """,
    )
    first, second = parse_local_file(path).spec.windows
    assert first.announce_seconds == seconds
    assert second.announce_seconds is None


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        pytest.param("-1", "-1", id="negative"),
        pytest.param("2592001", "2592001", id="over-30-days"),
        pytest.param('"3600"', "'3600'", id="string"),
        pytest.param("1.5", "1.5", id="fraction"),
        pytest.param("true", "True", id="boolean"),
        pytest.param("[60]", "[60]", id="list"),
    ],
)
def test_bad_announce_seconds_is_an_error_naming_the_field(
    tmp_path: Path, text: str, shown: str
) -> None:
    path = write(
        tmp_path,
        f"""
        spec:
          windows:
            - {{start: "2026-12-01T09:00:00Z", end: "2026-12-01T10:00:00Z"}}
            - start: "2026-12-02T09:00:00Z"
              end: "2026-12-02T10:00:00Z"
              announceSeconds: {text}
        """,
    )
    assert problems_of(path) == [
        f"{path}: spec.windows[1].announceSeconds: expected whole seconds from 0 to 2592000 "
        f"(30 days), got {shown}"
    ]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        pytest.param("spec: {}\nstatus: {}\n", "status", id="top-level"),
        pytest.param(
            "spec: {services: [{name: api, Critical: true}]}\n",
            "spec.services[0].Critical",
            id="service",
        ),
        pytest.param(
            "spec: {services: [{name: api, probe: {http: {url: 'http://x/'}, period: 5}}]}\n",
            "spec.services[0].probe.period",
            id="probe",
        ),
        pytest.param(
            "spec: {services: [{name: api, min_ready: 1}]}\n",
            "spec.services[0].min_ready",
            id="snake-case",
        ),
    ],
)
def test_unknown_field_is_an_error(tmp_path: Path, text: str, where: str) -> None:
    path = write(tmp_path, text)
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: {where}: unknown field")


def test_duplicate_service_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        metadata: {namespace: shop}
        spec:
          services:
            - {name: api}
            - {name: web}
            - {name: api, namespace: shop}
            - {name: api, namespace: other}
        """,
    )
    assert problems_of(path) == [
        f"{path}: spec.services[2]: duplicate service shop/api (already listed at spec.services[0])"
    ]


def test_duplicate_service_is_reported_with_other_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        spec:
          services:
            - {name: api}
            - {name: api, critical: maybe}
        """,
    )
    problems = problems_of(path)
    assert problems == [
        f"{path}: spec.services[1].critical: Input should be a valid boolean, "
        "unable to interpret input",
        f"{path}: spec.services[1]: duplicate service default/api "
        "(already listed at spec.services[0])",
    ]


@pytest.mark.parametrize(
    ("probe", "message"),
    [
        pytest.param("{}", "set exactly one of 'http' or 'tcp'", id="none"),
        pytest.param(
            "{http: {url: 'http://a/'}, tcp: {host: a, port: 1}}",
            "set exactly one of 'http' or 'tcp'",
            id="both",
        ),
        pytest.param(
            "{http: {url: 'ftp://a/'}}", "expected an http:// or https:// URL", id="scheme"
        ),
        pytest.param(
            "{http: {url: 'http://a/', expectStatus: [700]}}", "not HTTP statuses", id="status"
        ),
        pytest.param("{tcp: {host: a, port: 70000}}", "less than or equal to 65535", id="port"),
        pytest.param(
            "{tcp: {host: a, port: 1}, intervalSeconds: 0}", "greater than 0", id="interval"
        ),
    ],
)
def test_invalid_probe(tmp_path: Path, probe: str, message: str) -> None:
    path = write(tmp_path, f"spec: {{services: [{{name: api, probe: {probe}}}]}}\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: spec.services[0].probe")
    assert message in problem


def test_min_ready_above_one_cannot_be_met_by_a_probe(tmp_path: Path) -> None:
    path = write(tmp_path, "spec: {services: [{name: api, minReady: 2}]}\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: spec.services[0].minReady: must be 1")


def test_too_many_services(tmp_path: Path) -> None:
    services = "".join(f"    - {{name: s{i}}}\n" for i in range(101))
    path = write(tmp_path, f"spec:\n  services:\n{services}")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: spec.services: ")
    assert "100" in problem


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "the file is empty", id="empty"),
        pytest.param("# only a comment\n", "the file is empty", id="comment-only"),
        pytest.param("- spec\n", "the top level must be a mapping", id="list"),
        pytest.param("metadata: {name: x}\n", "spec: required field is missing", id="no-spec"),
        pytest.param(
            "kind: Deployment\nspec: {}\n", "kind: Input should be 'ServiceChecker'", id="kind"
        ),
    ],
)
def test_unusable_document(tmp_path: Path, text: str, message: str) -> None:
    (problem,) = problems_of(write(tmp_path, text))
    assert message in problem


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    assert problems_of(path) == [f"{path}: file not found"]


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00spec")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: cannot read the file")


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path)
    assert problem.startswith(f"{tmp_path}: cannot read the file")


def test_parsed_spec_is_immutable(tmp_path: Path) -> None:
    spec = parse_local_file(write(tmp_path, "spec: {services: [{name: api}]}\n"))
    assert isinstance(spec, LocalSpec)
    with pytest.raises(ValueError, match="frozen"):
        spec.spec.services[0].critical = True  # type: ignore[misc]


# --- scoped maintenance: routes, mode, holdSeconds (issue 14) ---------------------------


def test_scoped_fields_are_parsed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        spec:
          services:
            - name: payments
              critical: true
              routes:
                - pathPrefix: /checkout
                  methods: [POST]
                - pathPrefix: /api/payments
              holdSeconds: 20
            - name: db-primary
              critical: true
              mode: readOnly
              holdSeconds: 0
            - name: search
          maintenance: {enabled: true, mode: readOnly}
          windows:
            - {start: "2026-12-01T10:00:00Z", end: "2026-12-01T12:00:00Z", mode: readOnly}
            - {start: "2026-12-02T10:00:00Z", end: "2026-12-02T12:00:00Z"}
        """,
    )
    spec = parse_local_file(path).spec
    payments, db, search = spec.services
    assert [(r.path_prefix, r.methods) for r in payments.routes] == [
        ("/checkout", ("POST",)),
        ("/api/payments", ()),
    ]
    assert (payments.mode, payments.hold_seconds) == (Mode.FULL, 20)
    assert (db.routes, db.mode, db.hold_seconds) == ((), Mode.READ_ONLY, 0)
    assert (search.routes, search.mode, search.hold_seconds) == ((), Mode.FULL, None)
    assert spec.maintenance is not None
    assert spec.maintenance.mode is Mode.READ_ONLY
    assert [w.mode for w in spec.windows] == [Mode.READ_ONLY, Mode.FULL]


def test_an_absent_mode_is_full_on_the_switch(tmp_path: Path) -> None:
    spec = parse_local_file(write(tmp_path, "spec: {maintenance: {enabled: true}}")).spec
    assert spec.maintenance is not None
    assert spec.maintenance.mode is Mode.FULL


@pytest.mark.parametrize(
    ("routes", "problem"),
    [
        pytest.param(
            "[{pathPrefix: checkout}]",
            "spec.services[0].routes[0].pathPrefix: 'checkout' must start with '/'",
            id="no-leading-slash",
        ),
        pytest.param(
            '[{pathPrefix: ""}]',
            "spec.services[0].routes[0].pathPrefix: '' must start with '/'",
            id="empty",
        ),
        pytest.param(
            "[{pathPrefix: /a/../admin}]",
            "spec.services[0].routes[0].pathPrefix: '/a/../admin' has a '.' or '..' segment",
            id="dot-dot",
        ),
        pytest.param(
            "[{pathPrefix: /a/./b}]",
            "spec.services[0].routes[0].pathPrefix: '/a/./b' has a '.' or '..' segment",
            id="dot",
        ),
        pytest.param(
            "[{pathPrefix: /a//b}]",
            "spec.services[0].routes[0].pathPrefix: '/a//b' has an empty segment "
            "('//' or a trailing '/')",
            id="empty-segment",
        ),
        pytest.param(
            "[{pathPrefix: /checkout/}]",
            "spec.services[0].routes[0].pathPrefix: '/checkout/' has an empty segment "
            "('//' or a trailing '/')",
            id="trailing-slash",
        ),
        pytest.param(
            '[{pathPrefix: "/a?b=1"}]',
            "spec.services[0].routes[0].pathPrefix: '/a?b=1' must be a path only, "
            "without '?' or '#'",
            id="query",
        ),
        pytest.param(
            '[{pathPrefix: "/a#top"}]',
            "spec.services[0].routes[0].pathPrefix: '/a#top' must be a path only, "
            "without '?' or '#'",
            id="fragment",
        ),
        pytest.param(
            "[{pathPrefix: /a%2fb}]",
            "spec.services[0].routes[0].pathPrefix: '/a%2fb' has an encoded slash or "
            "backslash (%2F, %5C)",
            id="encoded-slash",
        ),
        pytest.param(
            '[{pathPrefix: "/a b"}]',
            "spec.services[0].routes[0].pathPrefix: '/a b' has a character that cannot appear "
            "raw in a path (percent-encode it, e.g. %20 for a space)",
            id="space",
        ),
        pytest.param(
            "[{pathPrefix: /" + "a" * 512 + "}]",
            "spec.services[0].routes[0].pathPrefix: is longer than 512 characters",
            id="513-chars",
        ),
        pytest.param(
            "[{pathPrefix: /a, methods: [post]}]",
            "spec.services[0].routes[0].methods[0]: 'post' is not an upper-case HTTP method "
            "such as 'POST' (methods are case-sensitive: 'POST')",
            id="lower-case-method",
        ),
        pytest.param(
            '[{pathPrefix: /a, methods: ["GET /"]}]',
            "spec.services[0].routes[0].methods[0]: 'GET /' is not an upper-case HTTP method "
            "such as 'POST'",
            id="not-a-token",
        ),
        pytest.param(
            "[{pathPrefix: /a, methods: [" + ", ".join(["GET"] * 17) + "]}]",
            "spec.services[0].routes[0].methods: Tuple should have at most 16 items after "
            "validation, not 17",
            id="17-methods",
        ),
        pytest.param(
            "[{methods: [POST]}]",
            "spec.services[0].routes[0].pathPrefix: required field is missing",
            id="no-prefix",
        ),
        pytest.param(
            "[{pathprefix: /a}]",
            "spec.services[0].routes[0].pathprefix: unknown field (field names are camelCase, "
            "e.g. minReady)",
            id="misspelt",
        ),
        pytest.param(
            "[" + ", ".join(["{pathPrefix: /a}"] * 101) + "]",
            "spec.services[0].routes: Tuple should have at most 100 items after validation, "
            "not 101",
            id="101-routes",
        ),
    ],
)
def test_a_bad_route_is_an_error_naming_the_field(
    tmp_path: Path, routes: str, problem: str
) -> None:
    path = write(tmp_path, f"spec: {{services: [{{name: payments, routes: {routes}}}]}}")
    assert any(p == f"{path}: {problem}" for p in problems_of(path)), problems_of(path)


def test_only_the_bad_route_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "spec: {services: [{name: payments, routes: [{pathPrefix: /ok}, {pathPrefix: bad}]}]}",
    )
    assert problems_of(path) == [
        f"{path}: spec.services[0].routes[1].pathPrefix: 'bad' must start with '/'"
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(
            "spec: {services: [{name: db, mode: readonly}]}",
            "spec.services[0].mode: Input should be 'full' or 'readOnly'",
            id="service-mode",
        ),
        pytest.param(
            "spec: {maintenance: {enabled: true, mode: read-only}}",
            "spec.maintenance.mode: Input should be 'full' or 'readOnly'",
            id="switch-mode",
        ),
        pytest.param(
            'spec: {windows: [{start: "2026-12-01T10:00:00Z", end: "2026-12-01T11:00:00Z", '
            "mode: partial}]}",
            "spec.windows[0].mode: Input should be 'full' or 'readOnly'",
            id="window-mode",
        ),
        pytest.param(
            "spec: {services: [{name: db, holdSeconds: 301}]}",
            "spec.services[0].holdSeconds: expected whole seconds from 0 to 300, got 301",
            id="hold-301",
        ),
        pytest.param(
            "spec: {services: [{name: db, holdSeconds: -1}]}",
            "spec.services[0].holdSeconds: expected whole seconds from 0 to 300, got -1",
            id="hold-negative",
        ),
        pytest.param(
            "spec: {services: [{name: db, holdSeconds: 1.5}]}",
            "spec.services[0].holdSeconds: expected whole seconds from 0 to 300, got 1.5",
            id="hold-fraction",
        ),
        pytest.param(
            'spec: {services: [{name: db, holdSeconds: "20"}]}',
            "spec.services[0].holdSeconds: expected whole seconds from 0 to 300, got '20'",
            id="hold-string",
        ),
        pytest.param(
            "spec: {services: [{name: db, holdSeconds: true}]}",
            "spec.services[0].holdSeconds: expected whole seconds from 0 to 300, got True",
            id="hold-boolean",
        ),
        pytest.param(
            "spec: {maintenance: {enabled: true, reason: " + "x" * 501 + "}}",
            "spec.maintenance.reason: String should have at most 500 characters",
            id="reason-501",
        ),
    ],
)
def test_a_bad_mode_or_hold_is_an_error_naming_the_field(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(tmp_path, text)
    assert problems_of(path) == [f"{path}: {problem}"]


def test_the_full_sample_parses_as_a_local_file() -> None:
    # The local file has the ServiceChecker's shape: the sample's scoped fields mean the same.
    text = (REPO / "config" / "samples" / "servicechecker_full.yaml").read_text()
    text = text.replace("minReady: 2", "minReady: 1")  # a probe sees one endpoint
    spec = parse_local_text(
        text.replace("enterDelaySeconds: 5", "").replace("exitDelaySeconds: 10", ""),
        source="sample",
    ).spec
    by_name = {s.name: s for s in spec.services}
    assert [r.path_prefix for r in by_name["payments"].routes] == ["/checkout", "/api/payments"]
    assert by_name["db-primary"].mode is Mode.READ_ONLY
