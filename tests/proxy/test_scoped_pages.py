"""The page of a scoped maintenance: it names only the causes that apply to the request, says
when reads still work, in every shipped language, and is kept per set of causes."""

from __future__ import annotations

from controller.snapshot import (
    Cause,
    CauseKind,
    Mode,
    Route,
    describe_down,
    describe_route_down,
)
from proxy.pages import PAGE_CACHE_SIZE, PageRenderer
from proxy.settings import PageSettings
from tests.proxy.test_pages import HTML, JSON, NOW, TEXT, problem_of, state, text_of

CHECKOUT = Cause(
    kind=CauseKind.SERVICE_DOWN,
    reason=describe_route_down(Mode.FULL),
    services=("payments",),
    routes=(Route("/checkout", frozenset({"POST"})),),
)
CART = Cause(
    kind=CauseKind.SERVICE_DOWN,
    reason=describe_route_down(Mode.READ_ONLY),
    services=("cart-db",),
    mode=Mode.READ_ONLY,
    routes=(Route("/cart"),),
)
PRIMARY = Cause(
    kind=CauseKind.SERVICE_DOWN,
    reason=describe_down(2, mode=Mode.READ_ONLY),
    services=("db-a", "db-b"),
    mode=Mode.READ_ONLY,
)


def test_the_page_names_only_the_causes_that_apply() -> None:
    pages = PageRenderer(PageSettings(show_services=True))
    current = state(CHECKOUT, CART)

    checkout = text_of(pages.maintenance_page(current, TEXT, now=NOW, causes=(0,)))
    cart = text_of(pages.maintenance_page(current, TEXT, now=NOW, causes=(1,)))

    assert "payments" in checkout
    assert "cart-db" not in checkout
    assert "only saving changes is paused" not in checkout
    assert "cart-db" in cart
    assert "payments" not in cart
    assert "only saving changes is paused" in cart


def test_problem_json_says_mode_and_routes() -> None:
    pages = PageRenderer(PageSettings())
    current = state(CHECKOUT, CART)

    problem = problem_of(pages.maintenance_page(current, JSON, now=NOW, causes=(1,)))

    assert problem["mode"] == "readOnly"
    assert problem["routes"] == ["/cart"]
    assert problem["services"] == ["cart-db"]
    both = problem_of(pages.maintenance_page(current, JSON, now=NOW))
    assert both["mode"] == "full"  # not every cause is read-only
    assert both["routes"] == ["/checkout", "/cart"]


def test_read_only_pages_speak_german_and_french() -> None:
    pages = PageRenderer(PageSettings())
    current = state(PRIMARY, CART)

    german = text_of(pages.maintenance_page(current, HTML, now=NOW, language="de"))
    french = text_of(pages.maintenance_page(current, TEXT, now=NOW, language="fr"))

    assert "nur das Speichern von Änderungen ist gerade pausiert" in german
    assert "weil 2 wichtige Dienste nicht verfügbar sind" in german
    assert "Änderungen in diesem Teil der Website sind pausiert" in german
    assert "seul l\u2019enregistrement des modifications est suspendu" in french
    assert "car 2 services essentiels sont indisponibles" in french


def test_pages_are_kept_per_set_of_causes_and_bounded() -> None:
    pages = PageRenderer(PageSettings())
    current = state(CHECKOUT, CART)

    first = pages.maintenance_page(current, HTML, now=NOW, causes=(0,))
    assert pages.maintenance_page(current, HTML, now=NOW, causes=(0,)) is first
    assert pages.maintenance_page(current, HTML, now=NOW, causes=(1,)) is not first
    assert pages.maintenance_page(current, HTML, now=NOW) is pages.maintenance_page(
        current, HTML, now=NOW
    )

    for i in range(PAGE_CACHE_SIZE + 5):  # a flood of distinct sets: rendered, not all kept
        key = (0,) * (i + 1)
        assert b"payments" in pages.maintenance_page(current, HTML, now=NOW, causes=key).body
    assert pages.maintenance_page(current, HTML, now=NOW, causes=(0,)) is first
