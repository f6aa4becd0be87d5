"""offload in a FastAPI app: the documented import path of `offload.web.integration`.

```python
from offload.web.integration import JobsDep, Offload
```
"""

from offload.web.integration import (
    CallerDep,
    JobsDep,
    Offload,
    OffloadDep,
    OperatorDep,
    get_caller,
    get_jobs,
    get_offload,
    get_operator,
)

__all__ = [
    "CallerDep",
    "JobsDep",
    "Offload",
    "OffloadDep",
    "OperatorDep",
    "get_caller",
    "get_jobs",
    "get_offload",
    "get_operator",
]
