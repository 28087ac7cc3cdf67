"""FERRY_AUTH=on: tenant keys keep tenants apart, on every route and both live transports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from tests.support.jobs import new_tenant, sleep_job
from tests.support.processes import api_process, shared_env
from tests.support.services import redis_namespace

ADMIN_KEY = "admin-key-for-tests"


@dataclass
class Api:
    base: str

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=10)

    def new_key(self, tenant: str) -> str:
        response = self.client(ADMIN_KEY).post(f"/tenants/{tenant}/keys")
        assert response.status_code == 201, response.text
        assert response.json()["tenantId"] == tenant
        return str(response.json()["key"])


@pytest.fixture(scope="module")
def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    logs = tmp_path_factory.mktemp("auth")
    with redis_namespace() as namespace:
        env = shared_env(
            database_url,
            namespace,
            FERRY_AUTH="on",
            FERRY_ADMIN_KEY=ADMIN_KEY,
            LOG_LEVEL="WARNING",
        )
        with api_process(env, logs, logs / "api.log") as base:
            yield Api(base)


def test_without_a_valid_key_only_probes_schema_and_page_answer(api: Api) -> None:
    anonymous, forged = api.client(), api.client("fk_not-a-key")
    for client in (anonymous, forged):
        assert client.get("/jobs").status_code == 401
        assert client.post("/jobs", json=sleep_job("t")).status_code == 401
        assert client.get("/events", params={"tenantId": "t"}).status_code == 401
    assert "API key" in anonymous.get("/jobs").json()["detail"]
    for path in ("/health", "/health/ready", "/schema/openapi.json", "/"):
        assert anonymous.get(path).status_code == 200, path


def test_a_tenant_key_acts_for_its_tenant_only(api: Api) -> None:
    mine, theirs = new_tenant(), new_tenant()
    key = api.new_key(mine)
    me, admin = api.client(key), api.client(ADMIN_KEY)
    my_job = me.post("/jobs", json=sleep_job(mine, 60_000)).json()["jobId"]
    their_job = admin.post("/jobs", json=sleep_job(theirs, 60_000)).json()["jobId"]
    # Bodies and queries naming another tenant: 403.
    assert me.post("/jobs", json=sleep_job(theirs)).status_code == 403
    assert (
        me.post("/jobs/batch", json={"jobs": [sleep_job(mine), sleep_job(theirs)]}).status_code
        == 403
    )
    assert me.get("/jobs", params={"tenantId": theirs}).status_code == 403
    assert me.get("/jobs/stats", params={"tenantId": theirs}).status_code == 403
    assert me.post("/jobs/retry", json={"tenantId": theirs}).status_code == 403
    # Another tenant's job: 404, as if it did not exist.
    for method, path in (("GET", ""), ("POST", "/cancel"), ("POST", "/retry"), ("DELETE", "")):
        assert me.request(method, f"/jobs/{their_job}{path}").status_code == 404, (method, path)
    assert me.patch(f"/jobs/{their_job}", json={"maxAttempts": 2}).status_code == 404
    assert admin.get(f"/jobs/{their_job}").json()["status"] == "PENDING"  # untouched
    # Without a tenantId, a listing is the key's own tenant.
    listed = me.get("/jobs").json()
    assert [job["id"] for job in listed["jobs"]] == [my_job]
    assert me.get("/jobs/stats").json()["tenantId"] == mine
    assert me.post(f"/jobs/{my_job}/cancel").status_code == 200


def test_a_tenant_key_manages_its_own_schedules_only(api: Api) -> None:
    mine, theirs = new_tenant(), new_tenant()
    me, admin = api.client(api.new_key(mine)), api.client(ADMIN_KEY)

    def schedule(tenant: str, name: str = "nightly") -> dict[str, object]:
        job = {"type": "sleep", "payload": {"delayMs": 5}}
        return {"tenantId": tenant, "name": name, "cron": "0 9 * * *", "job": job}

    def names(page: httpx.Response) -> list[tuple[str, str]]:
        assert page.status_code == 200, page.text
        return [(one["tenantId"], one["name"]) for one in page.json()["schedules"]]

    created = me.post("/schedules", json=schedule(mine))
    assert created.status_code == 201, created.text
    my_schedule = created.json()["id"]
    # The same name for another tenant, by the admin: no conflict.
    their_created = admin.post("/schedules", json=schedule(theirs))
    assert their_created.status_code == 201, their_created.text
    their_schedule = their_created.json()
    # A body naming another tenant: 403, and nothing created.
    assert me.post("/schedules", json=schedule(theirs, "sneaky")).status_code == 403
    # A listing naming another tenant: 403; without a tenant, or naming its own: its own.
    assert me.get("/schedules", params={"tenantId": theirs}).status_code == 403
    assert names(me.get("/schedules")) == [(mine, "nightly")]
    assert names(me.get("/schedules", params={"tenantId": mine})) == [(mine, "nightly")]
    assert me.get("/schedules").json()["total"] == 1
    # Another tenant's schedule: 404, as if it did not exist.
    path = f"/schedules/{their_schedule['id']}"
    assert me.get(path).status_code == 404
    assert me.patch(path, json={"name": "mine-now"}).status_code == 404
    assert me.patch(path, json={"cron": "* * * * *"}).status_code == 404
    for action in ("pause", "resume"):
        assert me.post(f"{path}/{action}").status_code == 404, action
    assert me.delete(path).status_code == 404
    # All untouched, and no schedule of theirs was made by the key.
    assert admin.get(path).json() == their_schedule
    assert names(admin.get("/schedules", params={"tenantId": theirs})) == [(theirs, "nightly")]
    # Its own: it reads, changes, pauses and deletes them.
    mine_path = f"/schedules/{my_schedule}"
    assert me.get(mine_path).json()["tenantId"] == mine
    assert me.patch(mine_path, json={"missed": "once"}).json()["missed"] == "once"
    assert me.post(f"{mine_path}/pause").json()["paused"] is True
    assert me.delete(mine_path).status_code == 204
    assert me.get("/schedules").json()["total"] == 0
    assert admin.delete(path).status_code == 204


def test_only_the_admin_key_manages_keys_and_reads_metrics(api: Api) -> None:
    tenant = new_tenant()
    key = api.new_key(tenant)
    assert api.client(key).post(f"/tenants/{tenant}/keys").status_code == 403
    assert api.client().post(f"/tenants/{tenant}/keys").status_code == 401
    assert api.client(key).get("/metrics").status_code == 403
    assert api.client(ADMIN_KEY).get("/metrics").status_code == 200
    assert api.client(ADMIN_KEY).post("/tenants/not a tenant/keys").status_code == 400


def test_limits_are_set_by_the_admin_and_read_by_their_tenant(api: Api) -> None:
    mine, theirs = new_tenant(), new_tenant()
    me, admin = api.client(api.new_key(mine)), api.client(ADMIN_KEY)
    assert me.put(f"/tenants/{mine}/limits", json={"weight": 9}).status_code == 403
    assert api.client().put(f"/tenants/{mine}/limits", json={"weight": 9}).status_code == 401
    assert admin.put(f"/tenants/{mine}/limits", json={"maxRunning": 3}).status_code == 200
    assert me.get(f"/tenants/{mine}/limits").json()["maxRunning"] == 3
    assert me.get(f"/tenants/{theirs}/limits").status_code == 403
    assert me.get(f"/tenants/{mine}/limits").json()["weight"] == 1  # the refused PUT: no change


def test_only_the_admin_pauses_and_resumes_a_tenant(api: Api) -> None:
    mine = new_tenant()
    me, admin = api.client(api.new_key(mine)), api.client(ADMIN_KEY)
    for action in ("pause", "resume"):
        assert me.post(f"/tenants/{mine}/{action}").status_code == 403
        assert api.client().post(f"/tenants/{mine}/{action}").status_code == 401
    assert me.get("/jobs/stats", params={"tenantId": mine}).json()["paused"] is False
    assert admin.post(f"/tenants/{mine}/pause").status_code == 200
    assert me.get("/jobs/stats", params={"tenantId": mine}).json()["paused"] is True
    assert admin.post(f"/tenants/{mine}/resume").status_code == 200


def test_a_revoked_key_stops_working(api: Api) -> None:
    tenant = new_tenant()
    admin = api.client(ADMIN_KEY)
    created = admin.post(f"/tenants/{tenant}/keys").json()
    key = created["key"]
    assert api.client(key).get("/jobs").status_code == 200
    assert admin.delete(f"/tenants/{tenant}/keys/{created['keyId']}").status_code == 204
    assert api.client(key).get("/jobs").status_code == 401
    assert admin.delete(f"/tenants/{tenant}/keys/{created['keyId']}").status_code == 404


def test_event_streams_take_the_key_as_a_token_and_check_the_tenant(api: Api) -> None:
    mine, theirs = new_tenant(), new_tenant()
    key = api.new_key(mine)
    with httpx.Client(base_url=api.base, timeout=5) as client:
        refused = client.get("/events", params={"tenantId": theirs, "token": key})
        assert refused.status_code == 403
        with client.stream("GET", "/events", params={"tenantId": mine, "token": key}) as ok:
            assert ok.status_code == 200


async def test_websocket_takes_the_key_as_a_token_and_refuses_other_tenants(api: Api) -> None:
    mine, theirs = new_tenant(), new_tenant()
    key = api.new_key(mine)
    url = api.base.replace("http://", "ws://") + "/ws"
    with pytest.raises(InvalidStatus):
        async with connect(url):
            pass
    async with connect(f"{url}?token={key}") as ws:
        assert json.loads(await ws.recv())["type"] == "CONNECTED"
        await ws.send(json.dumps({"type": "SUBSCRIBE", "tenantId": theirs}))
        refused = json.loads(await ws.recv())
        assert refused["type"] == "ERROR" and "acts for tenant" in refused["message"]
        await ws.send(json.dumps({"type": "SUBSCRIBE", "tenantId": mine}))
        assert json.loads(await ws.recv())["type"] == "SUBSCRIBED"


async def test_websocket_takes_the_key_in_its_subprotocol_header(api: Api) -> None:
    """Browsers cannot set Authorization on a WebSocket: the key travels as the
    subprotocol `bearer.<key>`, beside `ferry`, which the server accepts."""
    mine, theirs = new_tenant(), new_tenant()
    key = api.new_key(mine)
    url = api.base.replace("http://", "ws://") + "/ws"
    for forged in ("bearer.fk_not-a-key", "bearer."):
        with pytest.raises(InvalidStatus):  # refused before the handshake completes
            async with connect(url, subprotocols=[Subprotocol("ferry"), Subprotocol(forged)]):
                pass
    offered = [Subprotocol("ferry"), Subprotocol(f"bearer.{key}")]
    async with connect(url, subprotocols=offered) as ws:
        assert ws.subprotocol == "ferry"
        assert json.loads(await ws.recv())["type"] == "CONNECTED"
        await ws.send(json.dumps({"type": "SUBSCRIBE", "tenantId": theirs}))
        assert json.loads(await ws.recv())["type"] == "ERROR"
        await ws.send(json.dumps({"type": "SUBSCRIBE", "tenantId": mine}))
        assert json.loads(await ws.recv())["type"] == "SUBSCRIBED"
