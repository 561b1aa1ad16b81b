"""Checks measured, not declared: causality (``causality``), the shape contract
(``contract``), an empirical audit of the state a mixer declares (``state_audit``), and the
guard of a whole architecture that ``madbench eval`` runs before training (``guard``). They
run on small batches in eval mode: they find bugs; a mixer written to detect them can pass."""
from ._common import MixerLike, as_module, default_positions
from .causality import CAUSALITY_ATOL, CausalityResult, check_causality, check_model_causality
from .contract import ContractResult, check_contract
from .guard import guard_architecture, guard_lengths
from .state_audit import (AUDIT_MAX_SIZE, AUDIT_RTOL, AuditResult, audit_architecture,
                          audit_state, declared_state, finite_difference_error,
                          jacobian_across_split, jacobian_side, state_failures)

__all__ = ["AUDIT_MAX_SIZE", "AUDIT_RTOL", "AuditResult", "CAUSALITY_ATOL", "CausalityResult",
           "ContractResult", "MixerLike", "as_module", "audit_architecture", "audit_state",
           "check_causality", "check_contract", "check_model_causality", "declared_state",
           "default_positions", "finite_difference_error", "guard_architecture", "guard_lengths",
           "jacobian_across_split", "jacobian_side", "state_failures"]
