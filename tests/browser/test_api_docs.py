"""The API docs in a browser (issue 18): a logged-in person's "Try it out" reads with their
session, their own teams only; a change through the session is refused, saying a token is
needed; someone not logged in gets 401."""

import re

from playwright.sync_api import expect

FETCH = """async ([method, url]) => {
  const response = await fetch(url, {method, credentials: 'same-origin',
                                     headers: {'Content-Type': 'application/json'},
                                     body: method === 'GET' ? undefined : '{}'});
  return {status: response.status, body: await response.json()};
}"""


def test_try_it_out_on_a_get_endpoint_answers_200_with_the_session(demo, open_page):
    # given bob, logged in, on the API docs
    page = open_page("bob")
    page.goto("/api/docs/")
    operation = page.locator(".opblock-get").filter(
        has=page.locator(".opblock-summary-path", has_text=re.compile(r"^/api/v1/teams/$"))
    )

    # when he opens "GET /api/v1/teams/", presses Try it out, then Execute
    operation.locator(".opblock-summary").first.click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()

    # then the answer is 200 with his team, not 401
    live = operation.locator(".live-responses-table .response .response-col_status")
    expect(live.first).to_have_text("200")
    expect(operation.locator(".live-responses-table .highlight-code").first).to_contain_text(
        '"slug": "research"'
    )


def test_the_docs_page_reads_own_teams_only_and_writes_need_a_token(demo, open_page):
    # given carol (ops only), logged in, on the API docs
    page = open_page("carol")
    page.goto("/api/docs/")

    # her own team reads, another team is not found
    own = page.evaluate(FETCH, ["GET", "/api/v1/teams/ops/wallet/"])
    other = page.evaluate(FETCH, ["GET", "/api/v1/teams/research/wallet/"])
    assert own["status"] == 200 and own["body"]["team"] == "ops"
    assert other["status"] == 404 and other["body"]["error"]["code"] == "NOT_FOUND"

    # and a launch through the session is refused, saying a token is needed
    write = page.evaluate(FETCH, ["POST", "/api/v1/teams/ops/runs/"])
    assert write["status"] == 403
    assert "API token" in write["body"]["error"]["message"]


def test_not_logged_in_the_docs_reads_get_401(demo, open_page):
    page = open_page()
    page.goto("/api/docs/")
    answer = page.evaluate(FETCH, ["GET", "/api/v1/teams/"])
    assert answer["status"] == 401 and answer["body"]["error"]["code"] == "UNAUTHENTICATED"
