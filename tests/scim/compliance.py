"""Runs scim2-tester (python-scim's RFC 7643/7644 compliance checker) against
Latchkey's /scim/v2 and fails unless every check of the given tags passes.

Usage: compliance.py BASE_URL API_KEY TAG... Prints each check's result, then "ok".
"""
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server


def main(base, key, tags):
    http = Client(base_url=f"{base}/scim/v2", headers={"Authorization": f"Bearer {key}"})
    results = check_server(SyncSCIMClient(http), include_tags=set(tags))
    ran = [r for r in results if r.status != Status.SKIPPED]
    failed = [r for r in ran if r.status != Status.SUCCESS]
    for r in ran:
        print(r.status.name, r.title, r.reason or "")
    assert ran, "the checker ran no check"
    assert not failed, f"{len(failed)} of {len(ran)} checks failed"
    print(f"{len(ran)} checks passed")
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
