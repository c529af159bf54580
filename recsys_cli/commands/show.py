"""`recsys show`: predictions as text. A prompt with the model's answer and the reference, or
one user's history titles beside the top of their ranked list.

    recsys show answers --data runs/mi -p runs/mi/pred-rating.parquet --family rating -n 2
    recsys show user --data runs/toys -p runs/toys/pred-sequential.parquet -k 5
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from recsys_cli import console
from recsys_cli.options import AT_LEAST_1, AsJson, DataDir, ranged

app = typer.Typer(help="Show predictions as text: answers next to references, or one user's recommendations.")

Predictions = Annotated[
    Path, typer.Option("--predictions", "-p", help="Predictions file of `recsys infer` or `recsys baseline`.")
]


@app.command("answers")
def answers(
    data: DataDir,
    predictions: Predictions,
    family: Annotated[Optional[str], typer.Option("--family", help="Only this task family.")] = None,
    prompt_id: Annotated[
        Optional[list[str]], typer.Option("--prompt-id", help="Exactly these prompts (repeatable).")
    ] = None,
    n: Annotated[int, ranged("-n", rule=AT_LEAST_1, help="How many answers.")] = 1,
    as_json: AsJson = False,
) -> None:
    """Prompt, model output and reference of the first N answered prompts."""
    from rich.panel import Panel

    from recsys_cli.evaluation.examples import answers as collect

    rows = collect(data, predictions, family, prompt_id, n)
    if as_json:
        console.print_json(rows)
        return
    for r in rows:
        body = (
            f"[bold]prompt[/bold]\n{r['prompt']}\n\n"
            f"[bold]model output[/bold]\n{r['output']}\n\n"
            f"[bold]reference[/bold]\n{r['reference']}"
        )
        if r.get("top_titles"):
            body += "\n\n[bold]top titles[/bold]\n" + "\n".join(f"{i + 1}. {t}" for i, t in enumerate(r["top_titles"]))
        seen = "seen" if r["seen"] else "unseen"
        console.out.print(
            Panel(body, title=f"{r['family']} · {r['template_id']} ({seen}) · {r['prompt_id']}", expand=False),
            highlight=False,
        )


@app.command("user")
def user(
    data: DataDir,
    predictions: Predictions,
    user_id: Annotated[
        Optional[str], typer.Option("--user", help="The user (default: the first with a ranked answer).")
    ] = None,
    k: Annotated[int, ranged("-k", rule=AT_LEAST_1, help="Recommended titles to show.")] = 5,
    history: Annotated[int, ranged("--history", rule=AT_LEAST_1, help="Last history titles to show.")] = 10,
    as_json: AsJson = False,
) -> None:
    """A user's history titles and the top-k titles the predictions rank for them."""
    from rich.table import Table

    from recsys_cli.evaluation.examples import user_view

    view = user_view(data, predictions, user_id, k, history)
    if as_json:
        console.print_json(view)
        return
    t = Table(title=f"user {view['user_id']} · {view['family']} · {view['prompt_id']}")
    t.add_column(f"history (last {len(view['history_titles'])} of {view['history_length']}, oldest first)")
    t.add_column(f"recommended (top {len(view['top_titles'])})")
    for i in range(max(len(view["history_titles"]), len(view["top_titles"]))):
        h = view["history_titles"][i] if i < len(view["history_titles"]) else ""
        r = f"{i + 1}. {view['top_titles'][i]}" if i < len(view["top_titles"]) else ""
        t.add_row(h, r)
    console.print_table(t)
    rank = view["held_out_rank"]
    console.out.print(
        f"held-out next item: {view['held_out_title']} ({'rank ' + str(rank) if rank else 'not in the top ' + str(k)})",
        highlight=False,
    )
