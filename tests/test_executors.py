"""map_fn adapters return results in order, identical to builtins map."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from operator import mul

import pytest

from coalign import executor_map, pool_map, serial_map

ITEMS = list(range(23))
EXPECTED = [3 * i for i in ITEMS]


def test_serial_map_is_a_list():
    assert serial_map(partial(mul, 3), ITEMS) == EXPECTED


def test_pool_map():
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool_map(pool)(partial(mul, 3), iter(ITEMS)) == EXPECTED


@pytest.mark.parametrize("executor_type", [ThreadPoolExecutor, ProcessPoolExecutor])
def test_executor_map(executor_type):
    with executor_type(2) as executor:
        assert executor_map(executor)(partial(mul, 3), ITEMS) == EXPECTED


def test_client_map_with_local_cluster():
    distributed = pytest.importorskip("distributed", reason="dask.distributed is an optional dependency")
    from coalign import client_map

    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cl:
        with distributed.Client(cl) as client:
            assert client_map(client)(partial(mul, 3), ITEMS) == EXPECTED
