"""The read API over the serving store (FastAPI; OpenAPI at /openapi.json, docs at /docs).

  GET /v1/users/{user_id}/recommendations?n=10   the user's list of the served night, in rank
      order; a user the night does not know gets its cold-start list ("personalised": false)
  GET /v1/nights                                 the published versions, manifests and gate metrics
  GET /v1/health                                 200 with the served version; 503 without one

Every answer reads the store pointer and the rows as one snapshot, so a publish during a request
yields the old night or the new one, never a mix. A missing or corrupt store is a 503 for that
request; the server keeps running and serves again once the store is back. When GENRE_API_KEY is
set, every /v1 request needs the header X-API-Key with that value. For pseudonymised nights the
caller sends the raw user id and the API applies the same keyed hash as the recommend stage, with
the key from the environment variable the night names (recommend.privacy.pseudonym_key_env).
"""
from __future__ import annotations

import hmac
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel

from genre_lib.serve.store import ServingStore, StoreUnavailable

log = logging.getLogger("genre.serve")

MAX_USER_ID = 128


@dataclass
class ApiSettings:
    api_key: Optional[str] = field(default_factory=lambda: os.environ.get("GENRE_API_KEY") or None)
    pseudonym_key_env: str = "GENRE_PSEUDONYM_KEY"  # used when a night does not name its own
    default_n: int = 10
    max_n: int = 100


class Item(BaseModel):
    item_id: str
    title: Optional[str] = None
    rank: int
    score: Optional[float] = None
    reason: Optional[str] = None


class Recommendations(BaseModel):
    user_id: str
    ds: str
    run_id: str
    version: int
    variant: Optional[str] = None
    personalised: bool
    items: list[Item]


class Problem(BaseModel):
    detail: str


_ERRORS = {401: {"model": Problem, "description": "X-API-Key missing or wrong (when GENRE_API_KEY is set)"},
           400: {"model": Problem, "description": "unknown query parameter"},
           503: {"model": Problem, "description": "serving store missing, corrupt or empty"}}
_NIGHT_KEYS = ("version", "ds", "run_id", "rows", "users", "committed_at", "variants", "pseudonymised",
               "metric", "gate", "source", "store")


class _StoreHolder:
    """Opens the store on first use; a factory that fails is retried on the next request."""

    def __init__(self, factory: Callable[[], ServingStore]):
        self.factory = factory
        self.store: Optional[ServingStore] = None
        self.lock = threading.Lock()

    def __call__(self) -> ServingStore:
        if self.store is None:
            with self.lock:
                if self.store is None:
                    try:
                        self.store = self.factory()
                    except StoreUnavailable:
                        raise
                    except Exception as e:  # a bad URL, a refused connection: 503, not a crash
                        raise StoreUnavailable(f"cannot open the serving store: {type(e).__name__}: {e}") from e
        return self.store


def _only(*allowed: str):
    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - set(allowed))
        if unknown:
            raise HTTPException(400, f"unknown query parameter(s) {unknown}; allowed: {list(allowed)}")
    return Depends(check)


def create_app(store_factory: Callable[[], ServingStore], settings: Optional[ApiSettings] = None) -> FastAPI:
    settings = settings or ApiSettings()
    stores = _StoreHolder(store_factory)
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="needed when GENRE_API_KEY is set")

    def require_key(key: Optional[str] = Depends(key_header)) -> None:
        if settings.api_key and not (key and hmac.compare_digest(key.encode(), settings.api_key.encode())):
            raise HTTPException(401, "missing or wrong X-API-Key")

    def stored_id(meta: dict, user_id: str) -> str:
        if not meta.get("pseudonymised"):
            return user_id
        env = meta.get("pseudonym_key_env") or settings.pseudonym_key_env
        if not os.environ.get(env):
            raise StoreUnavailable(f"night {meta.get('ds')} is pseudonymised but {env} is not set on this server")
        from genre_lib.lake.pseudonym import pseudonymize  # the recommend stage's own keyed hash

        return str(pseudonymize([user_id], env)[0])

    app = FastAPI(title="GENRE recommendations", version="1",
                  description="Per-user recommendations of the last published night of genre_nightly.")
    router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=_ERRORS)

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(request: Request, exc: StoreUnavailable):
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(status_code=503, content={"detail": f"serving store unavailable: {exc}"},
                            headers={"Retry-After": "5"})

    @router.get("/users/{user_id}/recommendations", response_model=Recommendations,
                dependencies=[_only("n")], summary="A user's recommendations of the served night")
    def recommendations(user_id: str = Path(..., min_length=1, max_length=MAX_USER_ID),
                        n: int = Query(settings.default_n, ge=1, le=settings.max_n)) -> Recommendations:
        if not user_id.isprintable():
            raise HTTPException(422, "user_id must hold printable characters only")
        found = stores().get(user_id, n, id_for=stored_id)
        if found is None:
            raise StoreUnavailable("no night has been published yet")
        meta = found.meta
        return Recommendations(user_id=user_id, ds=meta["ds"], run_id=meta["run_id"], version=meta["version"],
                               variant=found.variant, personalised=found.personalised,
                               items=[Item(**row) for row in found.rows])

    @router.get("/nights", dependencies=[_only()], summary="Published versions, newest first")
    def nights() -> dict:
        store = stores()
        current = store.current()
        cur = current["version"] if current else None
        out = [{**{k: m.get(k) for k in _NIGHT_KEYS}, "current": m["version"] == cur}
               for m in reversed(store.versions())]
        return {"current": cur, "nights": out}

    @router.get("/health", dependencies=[_only()], summary="200 when a night is served, else 503")
    def health():
        try:
            current = stores().current()
        except StoreUnavailable as e:
            log.warning("health: %s", e)
            return JSONResponse(status_code=503, content={"status": "unavailable", "detail": str(e)})
        if current is None:
            return JSONResponse(status_code=503, content={"status": "empty", "detail": "no night published yet"})
        return {"status": "ok", **{k: current.get(k) for k in ("version", "ds", "run_id", "rows", "users",
                                                               "committed_at")}}

    app.include_router(router)
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` (several workers): the profile in GENRE_SERVE_CONFIG and
    overrides in GENRE_SERVE_SET (newline-separated key=value)."""
    from genre_lib.config.settings import load_config
    from genre_lib.serve.store import store_for

    overrides = [s for s in os.environ.get("GENRE_SERVE_SET", "").splitlines() if s.strip()]
    cfg = load_config(os.environ.get("GENRE_SERVE_CONFIG") or None, overrides)
    return create_app(lambda: store_for(cfg), ApiSettings(pseudonym_key_env=cfg.recommend.privacy.pseudonym_key_env))
