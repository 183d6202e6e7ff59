"""The per-attempt secret: everything a worker must not get through its (inspectable) service spec.

A JSON document stored as one Docker secret, mounted at /run/secrets/dmod-job (0400, uid 1000):

- `token`: the job-scoped JWT (LaunchRequest.token) the agent reports and moves data with;
- `ssh` (only when the attempt spans several containers): a fresh Ed25519 *user* key pair (rank 0
  logs in to the other replicas with it; its public half is their only authorized key) and a
  fresh Ed25519 *host* key pair (every replica's sshd presents it; the clients trust only it).
  Generated per attempt by the launcher and removed with the service: no key is ever baked into
  an image, and a key of one job opens nothing of another.
"""
from __future__ import annotations

import json

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def _keypair(comment: str) -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return private, f"{public} {comment}"


def bundle(token: str, group: str, multi: bool) -> bytes:
    doc: dict = {"version": 1, "token": token}
    if multi:
        user_private, user_public = _keypair(f"dmod-user@{group}")
        host_private, host_public = _keypair(f"dmod-host@{group}")
        doc["ssh"] = {"user_key": user_private, "user_pub": user_public,
                      "host_key": host_private, "host_pub": host_public}
    return json.dumps(doc).encode()


def parse(data: bytes) -> dict:
    doc = json.loads(data)
    if not isinstance(doc, dict) or "token" not in doc:
        raise ValueError("not a DMOD job secret")
    return doc
