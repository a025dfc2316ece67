"""A Google service-account key for tests: google-auth's application default
credentials (GOOGLE_APPLICATION_CREDENTIALS) exchange a JWT signed with it at
the key's `token_uri`, which tests point at the simulator's /oauth2/token.
The key is generated per run and never leaves the test's folder."""

from __future__ import annotations

import json
from pathlib import Path


def service_account(token_uri: str, project_id: str = "p") -> dict[str, str]:
    """A service-account key file's JSON with a fresh 2048-bit RSA key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {"type": "service_account", "project_id": project_id, "private_key_id": "k1", "private_key": pem,
            "client_email": f"sim@{project_id}.iam.gserviceaccount.com", "client_id": "1", "token_uri": token_uri}


def write_service_account(folder: Path, token_uri: str, project_id: str = "p") -> Path:
    """Writes a key file into `folder`; its path."""
    path = folder / "google-service-account.json"
    path.write_text(json.dumps(service_account(token_uri, project_id)))
    return path
