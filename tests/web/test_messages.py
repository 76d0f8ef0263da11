"""What the pages say, and in which words: the hub's refusals (the QA gate by name),
staff wording on staff pages, forms that keep their input when refused, a veto reason
used once, a toast stack that merges repeats and goes away, notices coloured by what
they mean, one page for a repair that is not the reader's, the technician's own logo
and a ticket pattern that compiles; and all of it in Spanish."""

from __future__ import annotations

import secrets
from typing import Any

from roomlog.identity import Role
from tests.e2e.support import Server
from tests.web.support import (
    DESKTOP,
    Pages,
    command,
    connected,
    expect,
    mine,
    open_ticket,
    request_form,
    room_state,
    shot,
    submit,
)


def test_the_technician_reads_what_the_qa_gate_wants(pages: Pages, hub: Server) -> None:
    ticket = open_ticket(hub, "quality_check")
    tech = pages.open("tech.html", "tech1", Role.TECHNICIAN, viewport=DESKTOP, ticket=ticket)
    connected(tech)
    assert tech.locator("header .home img").get_attribute("src") == "icons/tech.svg"
    expect(tech.get_by_test_id("ticket-status")).to_have_text("Quality check")
    tech.get_by_test_id("qa-item").fill("touch screen")
    tech.get_by_test_id("qa-passed").uncheck()
    tech.get_by_test_id("qa-record").click()
    expect(tech.get_by_test_id("qa")).to_contain_text("touch screen")
    tech.get_by_test_id("moves").locator('[data-move="ready_for_pickup"]').click()
    toast = tech.get_by_test_id("toast-error")
    expect(toast).to_contain_text("Ready for pickup needs every required check passed; "
                                  "failed: touch screen")
    expect(toast).not_to_contain_text("That is not possible any more")
    expect(tech.get_by_test_id("ticket-status")).to_have_text("Quality check")  # rolled back
    # The customer's page, same moment: the customer's wording.
    customer = pages.open("repair.html", "cust1", Role.CUSTOMER, ticket=ticket)
    connected(customer)
    expect(customer.get_by_test_id("status")).to_have_text("Quality check")


def test_staff_and_customer_wording(pages: Pages, hub: Server) -> None:
    ticket = open_ticket(hub, "awaiting_approval")
    tech = pages.open("tech.html", "tech1", Role.TECHNICIAN, ticket=ticket)
    customer = pages.open("repair.html", "cust1", Role.CUSTOMER, ticket=ticket)
    expect(tech.get_by_test_id("ticket-status")).to_have_text(
        "Waiting for the customer's approval")
    expect(tech.get_by_test_id("tickets")).to_contain_text("Waiting for the customer's approval")
    expect(customer.get_by_test_id("status")).to_have_text("Waiting for your approval")


def test_refusals_keep_the_form_and_say_it_once(pages: Pages, hub: Server) -> None:
    room = f"queue:msg-{secrets.token_hex(3)}"
    guest = pages.open("guest.html", "gina", Role.GUEST, room=room)
    connected(guest)
    request_form(guest, "Dancing Queen", "ABBA", "for my sister")
    expect(mine(guest, "Dancing Queen").get_by_test_id("status")).to_have_text("#1 in line")
    form = guest.get_by_test_id("request-form")
    expect(form.get_by_label("Title")).to_have_value("")  # taken: cleared

    # The same song again: refused; what was typed stays for a correction.
    request_form(guest, "Dancing Queen", "ABBA", "again?")
    toasts = guest.get_by_test_id("toast-error")
    expect(toasts).to_contain_text("You already requested this song.")
    expect(form.get_by_label("Title")).to_have_value("Dancing Queen")
    expect(form.get_by_label("Note")).to_have_value("again?")
    expect(guest.get_by_test_id("mine").locator("li.item")).to_have_count(1)
    # Twice more: one toast that counts, not a stack of copies.
    for _ in range(2):
        expect(guest.get_by_test_id("submit")).to_be_enabled()
        guest.get_by_test_id("submit").click()
    expect(toasts).to_have_count(1)
    expect(toasts).to_contain_text("\u00d73")  # "times 3"
    # And it goes away by itself (an upper bound: errors stay 8 s).
    expect(toasts).to_have_count(0)


def test_veto_reason_is_used_once_and_a_veto_is_not_good_news(pages: Pages, hub: Server) -> None:
    room = f"queue:veto-{secrets.token_hex(3)}"
    first = submit(hub, room, "gina", "Macarena", "Los del Río")
    second = submit(hub, room, "gina", "Gangnam Style", "PSY")
    third = submit(hub, room, "olga", "Hey Jude", "The Beatles")
    command(hub, room, "dj1", Role.DJ, "request.accept", request_id=third)  # dj1 owns it
    guest = pages.open("guest.html", "gina", Role.GUEST, room=room)
    dj = pages.open("dj.html", "dj1", Role.DJ, viewport=DESKTOP, room=room)
    connected(guest)
    connected(dj)
    reason = dj.get_by_test_id("veto-reason")
    reason.fill("not tonight")
    dj.get_by_test_id("pending").locator(f'li[data-request-id="{first}"]') \
        .get_by_test_id("veto").click()
    expect(reason).to_have_value("")  # used: cleared
    dj.get_by_test_id("pending").locator(f'li[data-request-id="{second}"]') \
        .get_by_test_id("veto").click()
    expect(dj.get_by_test_id("pending").locator("li.item")).to_have_count(0)
    requests = {r["id"]: r for r in room_state(hub, room, "gina", Role.GUEST)["mine"]}
    assert requests[first]["reason"] == "not tonight"
    assert requests[second]["reason"] is None, "the old reason was not reused"
    # The guest hears it, in amber, not green.
    notice = guest.get_by_test_id("toast-warn").filter(has_text="Macarena")
    expect(notice).to_contain_text("The DJ declined “Macarena”: not tonight")
    expect(guest.get_by_test_id("toast-ok")).to_have_count(0)
    assert notice.evaluate("e => getComputedStyle(e).backgroundColor") != \
        "rgb(22, 101, 52)"  # not the green of good news

    # Another DJ, who does not own the queue: refused, in staff words, with the hub's
    # reason; the reason typed is given back.
    fourth = submit(hub, room, "sam", "Heroes", "David Bowie")
    intruder = pages.open("dj.html", "dj2", Role.DJ, viewport=DESKTOP, room=room)
    connected(intruder)
    intruder.get_by_test_id("veto-reason").fill("no Bowie")
    intruder.get_by_test_id("pending").locator(f'li[data-request-id="{fourth}"]') \
        .get_by_test_id("veto").click()
    refusal = intruder.get_by_test_id("toast-error")
    expect(refusal).to_contain_text("Your role may not do that here.")
    expect(refusal.locator(".detail")).not_to_be_empty()
    expect(intruder.get_by_test_id("veto-reason")).to_have_value("no Bowie")
    expect(intruder.get_by_test_id("pending").locator(f'li[data-request-id="{fourth}"]')) \
        .to_be_visible()  # rolled back


def test_a_repair_that_is_not_yours_or_not_there_is_one_clear_page(
        pages: Pages, hub: Server) -> None:
    ticket = open_ticket(hub)
    for name, user in ((ticket, "cust2"), (f"t-none-{secrets.token_hex(3)}", "cust1")):
        tab = pages.open("repair.html", user, Role.CUSTOMER, ticket=name)
        page = tab.get_by_test_id("not-available")
        expect(page).to_contain_text("This repair is not available to you")
        expect(tab.get_by_test_id("toast-error")).to_have_count(0)
        expect(tab.get_by_test_id("summary")).to_have_count(0)  # no empty cards
    page.get_by_role("button", name="Enter another ticket number").click()
    expect(tab.get_by_test_id("setup")).to_be_visible()


def test_the_new_ticket_form_checks_the_id(pages: Pages, hub: Server) -> None:
    tech = pages.open("tech.html", "tech1", Role.TECHNICIAN)
    connected(tech)
    tech.get_by_text("Open a new ticket").click()
    field = tech.get_by_test_id("new-ticket")
    field.fill("t-2026.04@shop_1")
    assert field.evaluate("e => e.validity.valid")
    field.fill("-bad id!")
    assert field.evaluate("e => e.validity.patternMismatch")  # the pattern compiles and checks


def test_the_pages_speak_spanish(pages: Pages, hub: Server) -> None:
    room = f"queue:es-{secrets.token_hex(3)}"
    other = submit(hub, room, "olga", "Bésame mucho", "Consuelo Velázquez")
    for voter in ("a", "b", "c"):
        command(hub, room, voter, Role.GUEST, "request.vote", request_id=other)
    guest = pages.open("guest.html", "gina", Role.GUEST, locale="es-ES", room=room)
    expect(guest.get_by_test_id("connection")).to_have_text("En directo")
    assert guest.evaluate("document.documentElement.lang") == "es"
    expect(guest.get_by_role("heading", name="Pide una canción")).to_be_visible()
    expect(guest.get_by_test_id("vote")).to_contain_text("3")
    expect(guest.get_by_test_id("vote")).to_have_accessible_name("3 votos para «Bésame mucho»")
    request_form_es(guest, "La Bamba", "Ritchie Valens")
    expect(mine(guest, "La Bamba").get_by_test_id("status")).to_have_text("n.º 2 en espera")
    shot(guest, "guest-es-phone")
    # The switch: English from now on, remembered, and the page is redrawn in it.
    guest.get_by_test_id("language").select_option("en")
    expect(guest.get_by_role("heading", name="Request a song")).to_be_visible()
    expect(mine(guest, "La Bamba").get_by_test_id("status")).to_have_text("#2 in line")
    guest.reload()
    expect(guest.get_by_role("heading", name="My requests")).to_be_visible()

    ticket = open_ticket(hub, "awaiting_approval", amount=1234.5)
    customer = pages.open("repair.html", "cust1", Role.CUSTOMER, locale="es-ES", ticket=ticket)
    expect(customer.get_by_test_id("status")).to_have_text("Esperando tu aprobación")
    expect(customer.get_by_test_id("quote")).to_contain_text("1234,50\u00a0€")
    shot(customer, "repair-customer-es-phone")


def request_form_es(tab: Any, title: str, artist: str) -> None:
    form = tab.get_by_test_id("request-form")
    form.get_by_label("Título").fill(title)
    form.get_by_label("Artista").fill(artist)
    tab.get_by_test_id("submit").click()
