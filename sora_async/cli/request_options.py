"""A video request's options on the command line, and the VideoRequest fields they give."""

from __future__ import annotations

import argparse
from typing import Any

from ..models import AspectRatio, Model, Quality

__all__ = ["add_request_options", "request_defaults"]


def add_request_options(parser: argparse.ArgumentParser, *, defaults_only: bool = False) -> None:
    what = "default for lines that do not set it" if defaults_only else None

    def helptext(text: str) -> str:
        return f"{text} ({what})" if what else text

    parser.add_argument("--model", choices=[m.value for m in Model], help=helptext("model"))
    parser.add_argument(
        "--aspect-ratio",
        choices=[*(a.value for a in AspectRatio), "landscape", "portrait"],
        help=helptext("aspect ratio"),
    )
    parser.add_argument("--duration", type=int, choices=(10, 15), help=helptext("seconds"))
    parser.add_argument("--quality", choices=[q.value for q in Quality], help=helptext("quality"))
    visibility = parser.add_mutually_exclusive_group()
    visibility.add_argument(
        "--public",
        dest="public",
        action="store_const",
        const=True,
        help=helptext("list the video publicly (freesora's default)"),
    )
    visibility.add_argument(
        "--private",
        dest="public",
        action="store_const",
        const=False,
        help=helptext("keep the video unlisted (freesora)"),
    )
    if not defaults_only:
        parser.add_argument("--image", help="image-to-video: a local file or an http(s) URL")
        parser.add_argument("--watermark", help="watermark text (sora2api)")


def request_defaults(args: argparse.Namespace) -> dict[str, Any]:
    """VideoRequest fields given on the command line (None values left out)."""
    fields = {
        "model": args.model,
        "aspect_ratio": args.aspect_ratio,
        "duration": args.duration,
        "quality": args.quality,
        "public": args.public,
        "image": getattr(args, "image", None),
        "watermark": getattr(args, "watermark", None),
    }
    return {name: value for name, value in fields.items() if value is not None}
