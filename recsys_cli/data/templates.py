"""Our prompt templates for the five task families (written for this project).

Fields: {user} user id ("user_12"); {history} the user's recent item titles, oldest first,
joined with "; " (each title an item entity); {item} an item title (item entity);
{review} review text (first 80 words); {feature} the explanation's feature word.
Answers are short: a title, a star number, yes/no, a sentence or a review summary.
`seen=False` templates are held out of training and used only in valid/test prompts.

Each template owns its answer type, `answer` (ANSWER_TYPES): "item" (a title; the prompt is ranked),
"yes_no" (YES or NO), "rating" (a star number) or "text". `infer` chooses its decoding mode from it,
`score` its metric and the baselines which prompts they answer; nothing looks at the gold answer to
guess it. `answer_types` maps a template_id column to it. The yes/no answer words are written here only.

    python -c "from recsys_cli.data.templates import TEMPLATES; print(len(TEMPLATES))"
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import polars as pl

from recsys_cli.errors import InputError

YES, NO = "yes", "no"  # the two answers of a yes/no template (the only place they are spelled)
YES_NO = (YES, NO)
ITEM, YES_NO_ANSWER, RATING, TEXT = "item", "yes_no", "rating", "text"
ANSWER_TYPES = (ITEM, YES_NO_ANSWER, RATING, TEXT)
ANSWER_OF_KIND = {  # template kind -> answer type
    "next": ITEM,
    "rank": ITEM,
    "yesno": YES_NO_ANSWER,
    "like": YES_NO_ANSWER,
    "rating": RATING,
    "review_rating": RATING,
    "explain": TEXT,
    "explain_feature": TEXT,
    "summary": TEXT,
}


@dataclass(frozen=True)
class Template:
    template_id: str
    family: str
    kind: str  # next | rank | yesno | rating | like | explain | explain_feature | summary | review_rating
    source: str
    target: str
    seen: bool = True
    parts: tuple = field(default=(), compare=False)  # [(literal, field_name | None)], compiled
    target_field: str = ""  # the field the answer is ("item", "rating", ...)
    answer: str = ""  # the answer type (ANSWER_TYPES), from `kind`


def _t(tid: str, family: str, kind: str, source: str, target: str, seen: bool = True) -> Template:
    parts = tuple((lit, name) for lit, name, _, _ in string.Formatter().parse(source))
    return Template(tid, family, kind, source, target, seen, parts, target[1:-1], ANSWER_OF_KIND[kind])


R, S, E, V, D = "rating", "sequential", "explanation", "review", "direct"

TEMPLATES: tuple[Template, ...] = (
    # rating: predict a star rating (or like / dislike) from a user and an item
    _t("rating-1", R, "rating", "How many stars (1 to 5) would {user} give to {item}?", "{rating}"),
    _t("rating-2", R, "rating", "{user} has just received {item}. Predict the star rating they leave.", "{rating}"),
    _t("rating-3", R, "rating", "Guess the score from 1 to 5 that {user} assigns to {item}.", "{rating}"),
    _t("rating-4", R, "rating", "Item: {item}. Shopper: {user}. Expected rating out of five?", "{rating}"),
    _t("rating-5", R, "like", "Will {user} be pleased with {item}? Answer yes or no.", "{answer}"),
    _t("rating-6", R, "like", "Does {user} rate {item} four stars or more? Reply yes or no.", "{answer}"),
    _t("rating-7", R, "rating", "On a one-to-five star scale, what does {user} think of {item}?", "{rating}"),
    _t("rating-8", R, "like", "Is {item} a good match for {user}? yes or no", "{answer}"),
    _t("rating-9", R, "rating", "Rate {item} the way {user} would, using 1-5 stars.", "{rating}", seen=False),
    _t("rating-10", R, "like", "Would {user} recommend {item} to a friend? Say yes or no.", "{answer}", seen=False),
    # sequential: the next item after a history (target = the title)
    _t("sequential-1", S, "next", "{user} bought, in order: {history}. What will {user} buy next?", "{item}"),
    _t("sequential-2", S, "next", "Purchase history of {user}: {history}. Name the next purchase.", "{item}"),
    _t("sequential-3", S, "next", "After {history}, which item does {user} pick up next?", "{item}"),
    _t(
        "sequential-4",
        S,
        "next",
        "Here are the items {user} interacted with so far: {history}. Predict the following one.",
        "{item}",
    ),
    _t(
        "sequential-5",
        S,
        "next",
        "Shopping timeline for {user}: {history}. Continue the timeline with one item.",
        "{item}",
    ),
    _t("sequential-6", S, "next", "{user} recently chose {history}. Suggest the item they will choose next.", "{item}"),
    _t("sequential-7", S, "next", "Given the sequence {history}, recommend the next item for {user}.", "{item}"),
    _t("sequential-8", S, "next", "What comes after {history} in the shopping history of {user}?", "{item}"),
    _t(
        "sequential-9",
        S,
        "next",
        "Knowing that {user} owns {history}, which product is the natural next step?",
        "{item}",
        seen=False,
    ),
    _t(
        "sequential-10",
        S,
        "next",
        "List of past orders for {user}: {history}. Forecast the next order.",
        "{item}",
        seen=False,
    ),
    # explanation: a sentence a user would write about an item
    _t("explanation-1", E, "explain", "Write one sentence {user} might say about {item}.", "{explanation}"),
    _t("explanation-2", E, "explain", "Why would {user} like or dislike {item}? One sentence.", "{explanation}"),
    _t(
        "explanation-3",
        E,
        "explain_feature",
        "Explain in one sentence what {user} thinks of the {feature} of {item}.",
        "{explanation}",
    ),
    _t("explanation-4", E, "explain", "Give the reason {user} offers for their opinion of {item}.", "{explanation}"),
    _t(
        "explanation-5",
        E,
        "explain_feature",
        "Mentioning {feature}, describe {user}'s experience with {item}.",
        "{explanation}",
    ),
    _t("explanation-6", E, "explain", "A short remark by {user} on {item}:", "{explanation}"),
    _t(
        "explanation-7",
        E,
        "explain_feature",
        "{user} comments on {item}, focusing on {feature}. What do they say?",
        "{explanation}",
    ),
    _t("explanation-8", E, "explain", "Summarise in one sentence how {user} judged {item}.", "{explanation}"),
    _t("explanation-9", E, "explain", "State {user}'s main point about {item}.", "{explanation}", seen=False),
    _t(
        "explanation-10",
        E,
        "explain_feature",
        "What would {user} tell others about the {feature} of {item}?",
        "{explanation}",
        seen=False,
    ),
    # review: summarise a review, or read the rating from it
    _t("review-1", V, "summary", "Give a title for this review by {user}: {review}", "{summary}"),
    _t("review-2", V, "summary", "Review of {item} by {user}: {review} Headline:", "{summary}"),
    _t("review-3", V, "summary", "Condense this review into a few words: {review}", "{summary}"),
    _t("review-4", V, "review_rating", "{user} wrote about {item}: {review} How many stars did they give?", "{rating}"),
    _t("review-5", V, "review_rating", "From this review, infer the star rating (1-5): {review}", "{rating}"),
    _t(
        "review-6",
        V,
        "summary",
        "Write a short summary line for the review {user} posted on {item}: {review}",
        "{summary}",
    ),
    _t("review-7", V, "review_rating", "Review text: {review} Score out of five?", "{rating}"),
    _t("review-8", V, "summary", "{review} In a few words, what is this review saying?", "{summary}"),
    _t(
        "review-9", V, "summary", "Pick a headline for what {user} said about {item}: {review}", "{summary}", seen=False
    ),
    _t(
        "review-10",
        V,
        "review_rating",
        "Which rating from 1 to 5 matches this opinion of {item}? {review}",
        "{rating}",
        seen=False,
    ),
    # direct: pick the item among candidates (ranked by `candidates`), or yes/no for one item
    _t("direct-1", D, "rank", "{user} has bought {history}. Which candidate item should we show {user}?", "{item}"),
    _t(
        "direct-2",
        D,
        "rank",
        "Choose one item from the candidate list for {user}, whose history is {history}.",
        "{item}",
    ),
    _t(
        "direct-3", D, "yesno", "{user} has bought {history}. Should we recommend {item}? Answer yes or no.", "{answer}"
    ),
    _t("direct-4", D, "yesno", "Is {item} a good suggestion for {user} after {history}? yes or no", "{answer}"),
    _t("direct-5", D, "rank", "Pick the candidate most likely to interest {user}, given {history}.", "{item}"),
    _t(
        "direct-6",
        D,
        "yesno",
        "Past items of {user}: {history}. Will {user} engage with {item}? Say yes or no.",
        "{answer}",
    ),
    _t(
        "direct-7",
        D,
        "rank",
        "Select the best recommendation for {user} among the candidates. History: {history}.",
        "{item}",
    ),
    _t("direct-8", D, "yesno", "Given {history}, would {user} want {item}? Reply yes or no.", "{answer}"),
    _t(
        "direct-9",
        D,
        "rank",
        "From the candidate pool, which item fits {user} best? They liked {history}.",
        "{item}",
        seen=False,
    ),
    _t("direct-10", D, "yesno", "{user} owns {history}. Is {item} worth suggesting? yes or no", "{answer}", seen=False),
)


def by_family(family: str, seen: bool | None = None, kinds: tuple[str, ...] | None = None) -> list[Template]:
    """Templates of a family, optionally filtered by seen flag and kind (in table order)."""
    return [
        t
        for t in TEMPLATES
        if t.family == family and (seen is None or t.seen == seen) and (kinds is None or t.kind in kinds)
    ]


ANSWER_OF_TEMPLATE = {t.template_id: t.answer for t in TEMPLATES}


def answer_types(template_ids: pl.Series, where: str = "prompts.parquet") -> pl.Series:
    """The answer type (ANSWER_TYPES) of each prompt's template; a template_id that is not one of
    TEMPLATES is an error naming `where` (the prompts file) and the id."""
    got = template_ids.replace_strict(ANSWER_OF_TEMPLATE, default=None, return_dtype=pl.Utf8)
    unknown = got.is_null() & template_ids.is_not_null()
    if unknown.any():
        row = int(unknown.arg_true()[0])
        raise InputError.at(
            where, f"row {row}", f"a template_id of recsys's templates (data/templates.py); found {template_ids[row]!r}"
        )
    return got.alias("answer")
