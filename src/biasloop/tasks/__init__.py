"""Loop tasks: ``news``, ``math`` and ``preference``, one module each, registered in ``TASKS``.

The registry imports every module of this package the first time a name is looked up.
"""

from biasloop.tasks.base import TASKS, PooledTask, Query, Task, TaskParams, build_task

__all__ = ["TASKS", "PooledTask", "Query", "Task", "TaskParams", "build_task"]
