"""Verifies webhook requests with the reference Standard Webhooks library.

Reads a JSON list of {"secret", "body", "headers"} on stdin and prints a JSON
list: true for each request the library accepts, else its error message.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook

verdicts = []
for case in json.load(sys.stdin):
    try:
        Webhook(case["secret"]).verify(case["body"], case["headers"])
        verdicts.append(True)
    except Exception as error:  # the library's WebhookVerificationError and friends
        verdicts.append(f"{type(error).__name__}: {error}")
print(json.dumps(verdicts))
