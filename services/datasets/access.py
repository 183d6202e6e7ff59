"""Who may do what with a dataset.

Every authenticated caller may read every dataset (datasets are shared inputs); only the owner,
or an admin, may change one. A dataset labelled `public=true` is also offered by SearchDatasets
to other users.
"""
from __future__ import annotations

from dmod.services.runtime.auth import Principal, current_principal
from dmod.services.runtime.errors import PermissionDenied


def caller() -> Principal:
    return current_principal()


def require_owner(row, principal: Principal | None = None) -> None:
    principal = principal or caller()
    if row["owner"] != principal.user and not principal.is_admin:
        raise PermissionDenied(f"datasets/{row['id']} belongs to {row['owner']}", reason="NOT_DATASET_OWNER")
