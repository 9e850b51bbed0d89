"""Loop tasks: ``news``, ``math`` and ``preference`` (registered in ``TASKS`` on import)."""

from biasloop.tasks import math_task, news, preference  # noqa: F401  (registers the tasks)
from biasloop.tasks.base import TASKS, PooledTask, Query, Task, TaskParams, build_task

__all__ = ["TASKS", "PooledTask", "Query", "Task", "TaskParams", "build_task"]
