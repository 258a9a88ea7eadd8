"""The front door and the tabs that are not built yet (Generate, Library)."""
from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.routing import Route

from ..datasets import list_datasets
from ..training.runs import list_runs
from .common import redirect, render, url


async def index(request: Request):
    """Data when there is nothing yet, otherwise Train."""
    datasets = await asyncio.to_thread(list_datasets, request.app.state.data_dir)
    return redirect(request, "train_page" if datasets else "data_page")


async def generate_page(request: Request):
    runs = await asyncio.to_thread(list_runs, request.app.state.data_dir)
    trained = [r for r in runs if r.has_checkpoint]
    if trained:
        text = (f"You have {len(trained)} trained model{'s' if len(trained) != 1 else ''}. Generating new sounds from "
                "them in the browser is coming next; meanwhile the command line can: sda generate.")
        link, label = url(request, "train_page"), "Back to training"
    else:
        text = "Once a model has trained on your sounds, this is where you will draw new ones from it. Train one first."
        link, label = url(request, "train_page"), "Go to Train"
    return render(request, "empty.html", {"tab": "generate_page", "heading": "Generate", "text": text,
                                          "link": link, "link_label": label})


async def library_page(request: Request):
    text = ("Trained models and the sounds you generate will be kept here, ready to audition, rename and export. "
            "Nothing here yet.")
    return render(request, "empty.html", {"tab": "library_page", "heading": "Library", "text": text,
                                          "link": url(request, "data_page"), "link_label": "Add sounds"})


routes = [
    Route("/", index, name="index"),
    Route("/generate", generate_page, name="generate_page"),
    Route("/library", library_page, name="library_page"),
]
