"""``imgrec import darknet``: register a YOLOv3/v4-tiny-style Darknet detector (.cfg, .weights, .names)."""

from __future__ import annotations

from pathlib import Path

from imgrec.cli.args import EXIT_OK
from imgrec.core.errors import ModelError
from imgrec.core.files import sha256_file
from imgrec.core.refs import ModelRef
from imgrec.core.settings import Settings
from imgrec.modeling.darknet import import_darknet, read_names
from imgrec.registry.detectors import register_detector


def add_parser(commands) -> None:
    importing = commands.add_parser("import", help="import a model from another framework")
    formats = importing.add_subparsers(dest="format", required=True, metavar="FORMAT")
    darknet = formats.add_parser("darknet", help="a Darknet YOLO detector: .cfg, .weights and a .names file")
    darknet.add_argument("cfg", type=Path, metavar="CFG")
    darknet.add_argument("weights", type=Path, metavar="WEIGHTS")
    darknet.add_argument("--names", type=Path, required=True, metavar="FILE", help="class names, one a line")
    darknet.add_argument("--name", help="the model's name (default: the .cfg's file name)")
    darknet.add_argument("--licence", default="", help="the weights' licence, recorded in the model card")
    darknet.set_defaults(handler=run_darknet)


def run_darknet(args, settings: Settings) -> int:
    name = ModelRef.parse(args.name or args.cfg.stem).name
    class_names = read_names(args.names)
    imported = import_darknet(args.cfg, args.weights)
    if len(class_names) != imported.spec.num_classes:
        raise ModelError(f"{args.names.name} names {len(class_names)} classes but {args.cfg.name} has "
                         f"{imported.spec.num_classes}. Expected one name per class.")
    source = (f"Darknet import: {args.cfg.name} (sha256 {sha256_file(args.cfg)}), "
              f"{args.weights.name} (sha256 {sha256_file(args.weights)})")
    card = register_detector(imported.model, imported.spec, class_names, name, settings, source=source,
                             licence=args.licence)
    height, width = card.input_size
    print(f"Registered {card.ref}: {card.num_classes} classes, {width}×{height} input, "
          f"{len(imported.spec.masks)} heads, {imported.weights_read} weights read.")
    return EXIT_OK
