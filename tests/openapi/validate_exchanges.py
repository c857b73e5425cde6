"""Checks recorded HTTP exchanges with Latchkey against its OpenAPI document,
with openapi-core (the reference Python implementation): every response must
match its operation's documented status, headers and body schema, and every
request marked valid must match the documented request.

Usage: validate_exchanges.py OPENAPI_JSON EXCHANGES_JSON
Prints one line per problem and exits 1 if there is any.
"""
import json
import sys

from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse


def main(spec_path, exchanges_path):
    spec = OpenAPI.from_file_path(spec_path)
    with open(exchanges_path, encoding="utf-8") as f:
        exchanges = json.load(f)
    problems = []
    for n, x in enumerate(exchanges):
        request = MockRequest(
            "http://latchkey",
            x["method"].lower(),
            x["path"],
            headers=x["requestHeaders"],
            data=x["requestBody"].encode() if x["requestBody"] is not None else None,
        )
        response = MockResponse(
            x["responseBody"].encode(),
            status_code=x["status"],
            headers=x["responseHeaders"],
            content_type=x["responseContentType"],
        )
        where = f'#{n} {x["method"]} {x["path"]} -> {x["status"]}'
        if x["validRequest"]:
            try:
                spec.validate_request(request)
            except Exception as e:  # openapi-core raises one exception per problem
                problems.append(f"{where}: request: {e!r} {getattr(e, '__cause__', '')!r}")
        try:
            spec.validate_response(request, response)
        except Exception as e:
            problems.append(f"{where}: response: {e!r} {getattr(e, '__cause__', '')!r}")
    for p in problems:
        print(p)
    print(f"{len(exchanges)} exchanges, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
