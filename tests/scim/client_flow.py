"""Drives Latchkey's /scim/v2 with scim2-client (python-scim), a SCIM client
that checks every answer against the SCIM schemas and the server's own
discovery documents: discover, create, search, patch, replace, delete.

Usage: client_flow.py BASE_URL API_KEY. Prints "ok" or fails with the reason.
"""
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import Email, Name, PatchOp, PatchOperation, Role, SearchRequest, User


def main(base, key):
    http = Client(base_url=f"{base}/scim/v2", headers={"Authorization": f"Bearer {key}"})
    scim = SyncSCIMClient(http)
    scim.discover()

    user = User(
        user_name="bjarne@acme.example",
        name=Name(given_name="Bjarne", family_name="Stroustrup"),
        emails=[Email(value="bjarne@acme.example", type="work", primary=True)],
        roles=[Role(value="integration-user", primary=True)],
        active=True,
        external_id="ext-bjarne",
    )
    created = scim.create(user, raise_scim_errors=True)
    assert created.id, created
    assert created.user_name == "bjarne@acme.example", created
    assert created.display_name == "Bjarne Stroustrup", created

    found = scim.query(User, query_parameters=SearchRequest(filter='userName eq "bjarne@acme.example"'))
    assert found.total_results == 1 and found.resources[0].id == created.id, found

    patch = PatchOp[User](operations=[PatchOperation(op="replace", path="active", value=False)])
    scim.modify(User, created.id, patch, raise_scim_errors=True)
    fetched = scim.query(User, created.id)
    assert fetched.active is False, fetched

    fetched.active = True
    fetched.display_name = "Bjarne S."
    replaced = scim.replace(fetched, raise_scim_errors=True)
    assert replaced.active is True and replaced.display_name == "Bjarne S.", replaced

    scim.delete(User, created.id, raise_scim_errors=True)
    gone = scim.query(User, query_parameters=SearchRequest(filter='userName eq "bjarne@acme.example"'))
    assert gone.total_results == 0, gone
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
