"""Sellers of guaranteed deals: they pace delivery themselves and answer adjustment requests.

A PG deal delivers what its seller committed to (its *committed total*), paced along the deal's
opportunity curve with some noise, never beyond the real supply of the step. The buyer cannot
throttle it; it can only ask (`SellerDesk.submit`). Each seller answers after its own delay
(drawn per seller), accepting with a probability per kind; the k-th request on a deal uses the
deal's k-th pre-drawn uniform, so strategies meet the same seller moods.

On acceptance:

* INCREASE (and RESUME above the commitment): the seller commits to the target, but only up to
  what its real inventory can still deliver (delivered + true remaining capacity at answer
  time); less than asked is a PARTIAL answer with the accepted total.
* DECREASE, INVESTIGATE (and RESUME below the commitment): the commitment drops to the target,
  never below what is already delivered.

A rejection leaves the commitment as it was. Stalls are the world's (supply), not the seller's
choice: RESUME does not end a stall. Every request and answer is kept as the `RequestHistory`
the plan builder reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from reallocator.core.plan.model import RequestHistory, RequestKind, SellerResponse
from reallocator.sim.world import ACCEPT_DRAWS, FloatArray, IntArray, World


@dataclass
class _Pending:
    row: int  # index into the history rows
    deal: int
    kind: RequestKind
    target_total: int
    due: int  # step at which the answer arrives
    ref: str  # the caller's reference (e.g. plan name and request id over gRPC)


@dataclass(frozen=True)
class Answer:
    deal: int
    kind: RequestKind
    response: SellerResponse
    accepted_total: int
    committed_before: int
    committed_after: int
    step: int
    ref: str = ""


class SellerDesk:
    def __init__(self, world: World) -> None:
        self.world = world
        self.asked = np.zeros(world.n_deals, dtype=np.int64)  # requests so far per deal
        self.rows: list[dict[str, object]] = []
        self.pending: list[_Pending] = []
        self.answers: list[Answer] = []

    @property
    def n_requests(self) -> int:
        return len(self.rows)

    def submit(
        self, step: int, deal: int, kind: RequestKind, target_total: int, ref: str = ""
    ) -> None:
        w = self.world
        self.rows.append(
            {
                "deal_id": str(w.deal_ids[deal]),
                "requested_at": w.at(step).timestamp(),
                "kind": str(kind),
                "target_total": int(target_total),
                "response": str(SellerResponse.PENDING),
                "accepted_total": -1,
                "answered_at": float("nan"),
            }
        )
        due = step + int(w.delay_steps[deal])
        self.pending.append(_Pending(len(self.rows) - 1, deal, kind, int(target_total), due, ref))

    def pending_deals(self) -> IntArray:
        """Deals with a request still unanswered."""
        return np.array(sorted({p.deal for p in self.pending}), dtype=np.int64)

    def answer_due(self, step: int, committed: FloatArray, spent: FloatArray) -> list[Answer]:
        """Answers arriving at `step` (in submission order); updates `committed` in place."""
        w = self.world
        due = [p for p in self.pending if p.due <= step]
        if not due:
            return []
        self.pending = [p for p in self.pending if p.due > step]
        out: list[Answer] = []
        for p in due:  # a few per replan at most: not the per-step hot path
            d = p.deal
            u = w.accept_draws[d, self.asked[d] % ACCEPT_DRAWS]
            self.asked[d] += 1
            before = int(committed[d])
            target = p.target_total
            raising = target > before
            if p.kind is RequestKind.INCREASE or (p.kind is RequestKind.RESUME and raising):
                p_accept = w.accept_increase if p.kind is RequestKind.INCREASE else w.accept_resume
                if u < p_accept:
                    supply = int(np.floor(spent[d] + w.capacity_left[d, min(step, w.n_steps)]))
                    accepted = min(target, max(before, supply))
                    response = (
                        SellerResponse.ACCEPTED if accepted >= target else SellerResponse.PARTIAL
                    )
                else:
                    accepted, response = before, SellerResponse.REJECTED
            else:
                p_accept = w.accept_resume if p.kind is RequestKind.RESUME else w.accept_decrease
                if u < p_accept:
                    accepted = max(target, int(np.ceil(spent[d])))
                    response = SellerResponse.ACCEPTED
                else:
                    accepted, response = before, SellerResponse.REJECTED
            if response is not SellerResponse.REJECTED:
                committed[d] = float(accepted)
            row = self.rows[p.row]
            row["response"] = str(response)
            row["accepted_total"] = int(accepted) if response is not SellerResponse.REJECTED else -1
            row["answered_at"] = w.at(step).timestamp()
            answer = Answer(
                d, p.kind, response, int(accepted), before, int(committed[d]), step, p.ref
            )
            out.append(answer)
        self.answers.extend(out)
        return out

    def history(self) -> RequestHistory:
        """Every request so far with its answer (PENDING until it arrives)."""
        if not self.rows:
            return RequestHistory()
        frame = pd.DataFrame(self.rows)
        frame = frame.astype(
            {
                "deal_id": "str",
                "requested_at": "float64",
                "kind": "str",
                "target_total": "int64",
                "response": "str",
                "accepted_total": "int64",
                "answered_at": "float64",
            }
        )
        return RequestHistory(requests=frame)


def declared_inventory(world: World, step: int) -> IntArray:
    """Seller-declared remaining inventory per deal (budget units), -1 where not declared: the
    true remaining capacity with the seller's (per day) estimation error."""
    day = min(int(step * world.step_hours // 24), world.inventory_error.shape[1] - 1)
    estimate = world.capacity_left[:, min(step, world.n_steps)] * world.inventory_error[:, day]
    out: IntArray = np.where(world.declares, np.floor(estimate), -1).astype(np.int64)
    return out
