from __future__ import annotations

from tests.helpers import Api


async def test_walkthrough_create_submit_approve_resolve_verify(api: Api) -> None:
    await api.create_phrase()
    version = await api.approved_version(texts={"en-US": "This call is recorded."})
    resolved = await api.http.get(
        "/v1/phrases/recording/resolve", params={"locale": "en-US"}, headers=api.as_("agent-1")
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["text"] == "This call is recorded."
    assert resolved.json()["version"] == version["number"]
    verify = await api.http.get("/v1/audit/verify", headers=api.as_("audrey"))
    assert verify.json()["ok"] is True
