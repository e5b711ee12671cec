"""``imgrec models`` and ``imgrec init``: list the registered models, register the default one."""

from __future__ import annotations

import json

from imgrec.cli.args import EXIT_OK
from imgrec.core.settings import Settings
from imgrec.registry import catalog


def add_parser(commands) -> None:
    models = commands.add_parser("models", help="list the available models")
    models.add_argument("--json", action="store_true")
    models.set_defaults(handler=run_models)

    init = commands.add_parser("init", help="create data/ and register the default ImageNet model")
    init.set_defaults(handler=run_init)


def run_models(args, settings: Settings) -> int:
    active = catalog.active_ref(settings)
    rows = []
    for card in catalog.list_cards(settings):
        is_active = card.ref == active
        rows.append(
            {
                "name": card.name,
                "version": card.version,
                "backbone": card.backbone,
                "input_size": list(card.input_size),
                "classes": card.num_classes,
                "dataset": card.dataset,
                "metrics": card.metrics,
                "active": is_active,
            }
        )
    if args.json:
        for row in rows:
            print(json.dumps(row))
    elif not rows:
        print("No models yet. Run `python -m imgrec init` to register the default ImageNet model.")
    else:
        for row in rows:
            marker = "*" if row["active"] else " "
            size = "x".join(map(str, row["input_size"]))
            print(f"{marker} {row['name']}@{row['version']}  {row['backbone']}  {size}  "
                  f"{row['classes']} classes  {row['dataset']}")
    return EXIT_OK


def run_init(args, settings: Settings) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    card = catalog.ensure_default_model(settings)
    print(f"Default model ready: {card.ref} ({card.num_classes} classes).")
    return EXIT_OK
