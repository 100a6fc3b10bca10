"""Store.episodes / episode_page read plain SQL (issue 21): every field equals what the ORM row gives."""

import numpy as np

from recorder.store import CameraSpec, Store
from recorder.store.query import EpisodeQuery

from .helpers import LOWDIM, action, record, smooth_image, state


def test_listing_gives_the_same_infos_as_one_episode_lookups(home):
    with Store.open(home) as store:
        w = store.begin_episode(dataset="demo", fps=30.0, rig={"robot": "sim", "arm": {"dof": 6}}, lowdim=LOWDIM,
                                cameras={"front": CameraSpec(width=64, height=48)}, tags=("good", "red"))
        for i in range(6):
            w.add_tick(frames={"front": smooth_image(i, 0, 48, 64)},
                       values={"observation.state": state(i), "action": action(i)})
        a = w.finish(success=True)
        b = record(store, n=5, dataset="other", success=None, source="policy")
        w = store.begin_episode(dataset="topcam", fps=15.0, cameras={"top": CameraSpec(width=64, height=48, gop=4)},
                                lowdim={"action": (6,), "extra.grip": (1,)}, tags=("x",))
        for i in range(7):
            w.add_tick(t=i / 15, frames={"top": smooth_image(i, 0, 48, 64)},
                       values={"action": action(i), "extra.grip": np.ones(1, np.float32)})
        w.mark_segment("takeover", 2, 4, by="operator")
        c = w.finish(success=False, notes="segment\nand notes")
        store.update_episode(b.id, status="trashed")
        d = record(store, n=4, dataset="big", cameras={"front": CameraSpec(width=160, height=120)})

        listed = store.episodes(status=None)
        assert [e.id for e in listed] == [a.id, b.id, c.id, d.id]
        for info in listed:
            assert info == store.episode(info.id)  # the single lookup builds it from the ORM row
        by_id = {e.id: e for e in listed}
        # a batch by id (the Datasets tab's thumbnails: a screenful of records in one read) gives the same
        assert store.episodes_by_id([d.id, a.id, c.id, 10_000]) == {i: by_id[i] for i in (a.id, c.id, d.id)}
        assert store.episodes_by_id([]) == {}
        assert by_id[c.id].segments == ({"kind": "takeover", "start_tick": 2, "end_tick": 4, "by": "operator"},)
        assert by_id[a.id].rig == {"robot": "sim", "arm": {"dof": 6}} and by_id[a.id].tags == ("good", "red")
        assert by_id[b.id].status_before_trash == "complete" and by_id[b.id].status == "trashed"
        assert set(by_id[c.id].lowdim) == {"action", "extra.grip"} and by_id[c.id].cameras["top"].gop == 4
        # an info's mutable parts are its own: editing one listing does not change another
        by_id[a.id].rig["arm"]["dof"] = 7
        assert store.episodes(query=EpisodeQuery(dataset="demo", tags=["red"]))[0].rig["arm"]["dof"] == 6
