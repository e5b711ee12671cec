"""The tasks by name: look one up from a model card or a run config, never test for a task by hand."""

from __future__ import annotations

from imgrec.core.errors import ModelError
from imgrec.tasks.base import Task
from imgrec.tasks.classification import ClassificationTask
from imgrec.tasks.detection import DetectionTask
from imgrec.tasks.multilabel import MultiLabelTask

TASKS: dict[str, Task] = {task.name: task for task in (ClassificationTask(), DetectionTask(), MultiLabelTask())}
DEFAULT_TASK = ClassificationTask.name


def task_named(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ModelError(f"Unknown task '{name}'. Expected one of: {', '.join(TASKS)}.") from None


def task_for(card) -> Task:
    """The task of a model, from its card."""
    return task_named(card.task)
