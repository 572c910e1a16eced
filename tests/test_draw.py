"""The one drawing module (storage/draw.py), checked on pixels: order, tags, placement, colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from storage.draw import Mark, colour, draw, place_tags

VOCABULARY = ("oil", "black spot", "bubble", "plastering thread", "quenched grain")
GREY = np.full((700, 820, 3), 128, np.uint8)


def overlap(a, b) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def test_every_class_has_its_own_colour_everywhere():
    colours = [colour(name, VOCABULARY) for name in VOCABULARY]
    assert len(set(colours)) == len(VOCABULARY)
    assert colour("crack") == colour("crack", VOCABULARY)  # not in the vocabulary: stable by name


def test_the_highest_score_is_drawn_on_top():
    # The picture: a quenched grain at 0.82 and a plastering thread at 0.06 on one spot.
    high, low = Mark([300, 300, 400, 400], "quenched grain", 0.82), Mark([300, 300, 400, 400], "plastering thread", 0.06)
    for marks in ([high, low], [low, high]):
        out = draw(GREY, marks, VOCABULARY)
        assert tuple(out[350, 300]) == colour("quenched grain", VOCABULARY)  # the shared left edge
    placed = dict((m.name, r) for m, r in place_tags([low, high], 820, 700))
    # The highest score keeps the best place, just above its box; the other moves, not over it.
    assert placed["quenched grain"][3] == 300 and placed["quenched grain"][0] == 300
    assert overlap(placed["quenched grain"], placed["plastering thread"]) == 0


def test_a_tag_is_a_solid_block_in_the_class_colour_with_text_on_it():
    mark = Mark([200, 200, 300, 260], "bubble", 0.5)
    (_, (x1, y1, x2, y2)), = place_tags([mark], 820, 700)
    tag = draw(GREY, [mark], VOCABULARY)[y1:y2, x1:x2].reshape(-1, 3)
    fill = np.all(tag == colour("bubble", VOCABULARY), axis=1).mean()
    assert 0.5 < fill < 0.98  # solid behind the text, and the text is there


def test_tags_stay_inside_the_image_at_every_edge():
    for box in ([790, 5, 819, 40], [0, 0, 30, 20], [780, 670, 819, 699], [-20, 600, 15, 699]):
        (_, (x1, y1, x2, y2)), = place_tags([Mark(box, "plastering thread", 0.123)], 820, 700)
        assert 0 <= x1 < x2 <= 820 and 0 <= y1 < y2 <= 700, box
    # drawn: the tag at the right edge ends at the image's last column, its text whole
    out = draw(GREY, [Mark([790, 5, 819, 40], "plastering thread", 0.123)], VOCABULARY)
    assert tuple(out[10, 819]) != (128, 128, 128)


def test_tags_of_overlapping_boxes_do_not_overlap_where_there_is_room():
    marks = [Mark([400 + 3 * i, 300 + 2 * i, 460 + 3 * i, 350 + 2 * i], VOCABULARY[i], 0.2 + 0.15 * i)
             for i in range(5)]
    rects = [r for _, r in place_tags(marks, 820, 700)]
    assert all(overlap(a, b) == 0 for i, a in enumerate(rects) for b in rects[i + 1:])


def test_weak_marks_are_thin_and_untagged_below_the_others():
    weak, strong = Mark([100, 100, 200, 200], "oil", 0.9, weak=True), Mark([100, 100, 200, 200], "bubble", 0.1)
    assert [m for m, _ in place_tags([weak, strong], 820, 700)] == [strong]
    out = draw(GREY, [strong, weak], VOCABULARY)
    assert tuple(out[150, 100]) == colour("bubble", VOCABULARY)


def test_thumbnail_scale_maps_boxes():
    small = np.full((175, 205, 3), 128, np.uint8)
    out = draw(small, [Mark([400, 400, 600, 600], "oil", 0.7)], VOCABULARY, scale=0.25)
    assert tuple(out[125, 100]) == colour("oil", VOCABULARY)


def test_detect_writes_one_file_per_input_even_with_the_same_name():
    from edge.commands.detect import output_names

    assert output_names([Path("a/view.png"), Path("b/view.png"), Path("c/view.png"), Path("view")]) == [
        "view.png", "view-2.png", "view-3.png", "view-4.png"]
