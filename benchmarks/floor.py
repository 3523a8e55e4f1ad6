"""The floor: the same N tokens into the same N Secrets, with nothing but a plain asyncio script.

No operator, no watch, no status, no checks: httpx requests each token (one pooled client per
transport certificate, as the operator pools them) and the official Kubernetes client creates
each Secret from a thread pool of the operator's size, with the operator's concurrency. Whatever
the operator takes beyond this is its own overhead.

Run as `python -m benchmarks.floor CONFIG.json`; prints one JSON object.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import kubernetes


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def run_floor(config: dict[str, Any]) -> dict[str, Any]:
    concurrency = int(config["concurrency"])
    threads = int(config["threads"])
    namespace = config["namespace"]
    kube_config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(
        config_file=config["kubeconfig"], client_configuration=kube_config
    )
    kube_config.connection_pool_maxsize = threads
    core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(kube_config))
    executor = ThreadPoolExecutor(max_workers=threads)
    loop = asyncio.get_running_loop()

    clients = []
    for cert, key in config["certificates"]:
        context = ssl.create_default_context(cafile=config["ca"])
        context.load_cert_chain(cert, key)
        limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
        clients.append(httpx.AsyncClient(verify=context, limits=limits, timeout=30.0))
    discovery = await clients[0].get(config["issuer"] + "/.well-known/openid-configuration")
    token_endpoint = discovery.json()["mtls_endpoint_aliases"]["token_endpoint"]

    slots = asyncio.Semaphore(concurrency)
    errors = 0

    async def one(index: int, client_id: str) -> None:
        nonlocal errors
        async with slots:
            response = await clients[index % len(clients)].post(
                token_endpoint,
                data={
                    "grant_type": "client_credentials",
                    "client_id": client_id,
                    "scope": config["scope"],
                },
            )
            if response.status_code != 200:
                errors += 1
                return
            token = response.json()
            body = {
                "metadata": {"name": f"floor-{index}", "namespace": namespace},
                "type": "Opaque",
                "data": {
                    "access_token": _b64(token["access_token"]),
                    "token_type": _b64(token["token_type"]),
                    "expires_at": _b64(str(token["expires_in"])),
                    "scope": _b64(token.get("scope", "")),
                },
            }
            await loop.run_in_executor(
                executor,
                lambda: core.create_namespaced_secret(namespace, body, _preload_content=False),
            )

    started = time.monotonic()
    await asyncio.gather(*(one(i, cid) for i, cid in enumerate(config["client_ids"])))
    elapsed = time.monotonic() - started
    for client in clients:
        await client.aclose()
    executor.shutdown()
    return {"seconds": elapsed, "tokens": len(config["client_ids"]) - errors, "errors": errors}


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    print(json.dumps(asyncio.run(run_floor(config))))


if __name__ == "__main__":
    main()
