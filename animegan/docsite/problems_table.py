"""Every problem type (``type`` = ``/problems/<slug>``), from the gateway's table and the job error codes.

The same entries the gateway serves at ``GET /problems/{slug}`` (``api.ops.problem_guide``): a
summary table, then a section per type whose heading is the slug, so ``#<slug>`` links to it.
"""

from __future__ import annotations

from animegan.docsite.markdown_table import code, prose, table
from api.ops.problem_guide import ProblemType, problem_types


def _where(problem: ProblemType) -> str:
    answers = [f"HTTP {problem.status}"] if problem.status is not None else []
    if problem.job_error:
        answers.append("a failed job's `error.type`")
    return ", ".join(answers)


class UndocumentedProblem(Exception):
    """A problem type without its entry in ``api.ops.problem_guide.GUIDE``."""


def render() -> str:
    problems = problem_types()
    missing = [p.slug for p in problems if not (p.when and p.action)]
    if missing:
        raise UndocumentedProblem(f"problem types without an entry in api/ops/problem_guide.py: {', '.join(missing)}")
    summary = table(
        ["type", "status", "title"],
        [(f"[{code('/problems/' + p.slug)}](#{p.slug})", _where(p), p.title) for p in problems]
        + [
            (
                code("about:blank"),
                "any",
                "plain HTTP errors (an unknown route's 404, a 405): the title is the reason phrase",
            )
        ],
    )
    sections = [
        f"### {p.slug}\n\n**{prose(p.title)}**: {_where(p)}.\n\n**When it happens.** {prose(p.when)}\n\n"
        f"**What to do.** {prose(p.action)}\n"
        for p in problems
    ]
    return summary + "\n" + "\n".join(sections)
