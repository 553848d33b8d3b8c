"""Match the node's output masks to the frames that were sent, by header stamp.

The node copies the input header onto its masks, so a mask belongs to the frame with the same
stamp. Frames with no mask were dropped; masks with a stamp nobody sent (or a second mask for
the same frame) are counted apart, never scored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence


@dataclass
class StampMatch:
    """Result of matching received stamps to sent stamps.

    Attributes:
        matched: (frame index, received position) for every frame that got a mask, in frame order.
        dropped: indices of frames sent but never answered.
        unexpected: received stamps that match no sent frame.
        duplicates: received stamps seen more than once (only the first is matched).
    """

    matched: list[tuple[int, int]] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    unexpected: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)

    @property
    def num_matched(self) -> int:
        return len(self.matched)


def match_stamps(sent: Sequence[int], received: Iterable[int]) -> StampMatch:
    """Pair each sent stamp (ns, unique) with the first received message carrying it.

    Args:
        sent: stamps of the frames sent, in order; index i is frame i.
        received: stamps of the masks, in arrival order.
    """
    by_stamp: dict[int, int] = {}
    for index, stamp in enumerate(sent):
        if stamp in by_stamp:
            raise ValueError(f'sent stamp {stamp} occurs twice (frames {by_stamp[stamp]} and '
                             f'{index}); masks could not be told apart')
        by_stamp[stamp] = index
    result = StampMatch()
    answered: dict[int, int] = {}
    for position, stamp in enumerate(received):
        index = by_stamp.get(stamp)
        if index is None:
            result.unexpected.append(stamp)
        elif index in answered:
            result.duplicates.append(stamp)
        else:
            answered[index] = position
    result.matched = sorted(answered.items())
    result.dropped = [i for i in range(len(sent)) if i not in answered]
    return result
