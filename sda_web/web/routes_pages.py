"""The front door: / goes to the tab that makes sense now."""
from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.routing import Route

from ..datasets import list_datasets
from .common import redirect


async def index(request: Request):
    """Data when there is nothing yet, otherwise Train."""
    datasets = await asyncio.to_thread(list_datasets, request.app.state.data_dir)
    return redirect(request, "train_page" if datasets else "data_page")


routes = [
    Route("/", index, name="index"),
]
