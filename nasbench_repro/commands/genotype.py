"""`nasbench genotype`: list, show and measure published or pasted genotypes."""

from __future__ import annotations

import argparse
import json

from tabulate import tabulate

NAME_HELP = "a published name (see `nasbench genotype list`), a JSON file, or a pasted Genotype(...) string"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "genotype",
        help="list, show and measure genotypes",
        description="Published and pasted genotypes of the DARTS cell spaces.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="the published genotypes and their sources")
    listing.set_defaults(handler=handle_list)

    show = actions.add_parser("show", help="print a genotype in the official form, with its source and notes")
    show.add_argument("name", metavar="NAME", help=NAME_HELP)
    show.set_defaults(handler=handle_show)

    cost = actions.add_parser(
        "cost",
        help="parameters and multiply-adds of the paper evaluation network",
        description="Parameters (auxiliary head excluded) and multiply-adds of one image in "
        "the network the cell's own method evaluates it in (its protocol's C and "
        "cells, e.g. GDAS FRC on ImageNet: C=52, 14 cells), beside the paper's "
        "numbers; cells no method claims get DARTS's network (CIFAR-10 C=36, 20 "
        "cells, 32x32; ImageNet C=48, 14 cells, 224x224). On ptb and wt2 the "
        "recurrent cell's language model (hidden 850 and 700, tied embedding): "
        "parameters only.",
    )
    cost.add_argument("name", metavar="NAME", help=NAME_HELP)
    cost.add_argument(
        "--dataset",
        choices=["cifar10", "imagenet", "ptb", "wt2"],
        default="cifar10",
        help="the dataset decides the network, and whether NAME means a CNN or a recurrent cell",
    )
    cost.add_argument(
        "--convention",
        choices=["conv", "ptflops"],
        default="conv",
        help="conv: convolutions and linear layers only (default); ptflops: also BN, ReLU and "
        "pooling, as the ptflops package counts (matches the PC-DARTS and P-DARTS tables)",
    )
    cost.add_argument(
        "--json",
        action="store_true",
        help="print {params_millions, madds_millions, init_channels, layers, network_from, paper} as "
        "JSON (text datasets: params_millions only)",
    )
    cost.set_defaults(handler=handle_cost)


def handle_list(args: argparse.Namespace) -> int:
    from nasbench_repro.spaces.genotypes import published_genotypes

    rows = [[entry.kind, entry.name, ", ".join(entry.aliases), entry.source] for entry in published_genotypes()]
    print(tabulate(rows, headers=["kind", "name", "aliases", "source"]))
    return 0


def handle_show(args: argparse.Namespace) -> int:
    from nasbench_repro.spaces.genotypes import find_published, resolve_genotype

    genotype = resolve_genotype(args.name)
    print(genotype)
    entry = find_published(args.name)
    if entry is not None:
        for label, value in (
            ("name", entry.title or entry.name),
            ("aliases", ", ".join(entry.aliases)),
            ("source", entry.source),
            ("search", entry.search),
            ("note", entry.note),
        ):
            if value:
                print(f"{label}: {value}")
    return 0


def handle_cost(args: argparse.Namespace) -> int:
    from nasbench_repro.cost import genotype_cost, paper_network, paper_sizes

    cost = genotype_cost(args.name, args.dataset, args.convention)
    if "madds_millions" not in cost:
        if args.json:
            print(json.dumps(cost))
        else:
            print(
                f"{args.dataset}: {cost['params_millions']:.3f}M parameters "
                f"(language model, the tied embedding counted once)"
            )
        return 0
    network = paper_network(args.name, args.dataset)
    paper = paper_sizes(args.name, args.dataset)
    if args.json:
        print(
            json.dumps(
                {
                    **cost,
                    "init_channels": network.init_channels,
                    "layers": network.layers,
                    "network_from": network.method,
                    "paper": {metric: claim.value for metric, claim in paper.items()},
                }
            )
        )
        return 0
    print(
        f"{args.dataset}: {cost['params_millions']:.3f}M parameters (auxiliary head excluded), "
        f"{cost['madds_millions']:.1f}M multiply-adds ({args.convention} convention)"
    )
    origin = f"the {network.method} protocol" if network.method else "DARTS's setting (no method claims this cell)"
    print(f"network: C={network.init_channels}, {network.layers} cells, from {origin}")
    if paper:
        numbers = ", ".join(
            f"{claim.display()}{'M parameters' if metric == 'params_millions' else 'M multiply-adds'}"
            for metric, claim in paper.items()
        )
        print(
            f"paper: {numbers} ({', '.join(claim.id for claim in paper.values())}: {next(iter(paper.values())).source})"
        )
    return 0
