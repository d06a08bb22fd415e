import numpy as np
import pytest
import SimpleITK as sitk

from luna_core.data.geometry import (
    IrcTuple,
    XyzTuple,
    irc2xyz,
    irc2xyz_array,
    xyz2irc,
    xyz2irc_array,
)


def _rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))           # a proper random orthonormal matrix
    assert not np.allclose(q, q.T)        # non-symmetric: the book's formula would fail
    return q


DIRECTIONS = {
    "identity": np.eye(3),
    "flip_xy": np.diag([-1.0, -1.0, 1.0]),
    "rotation": _rotation(1),
    "rotation2": _rotation(7),
    # 90 degrees about z, then z flipped: exact entries, not symmetric
    "rot90z_flipz": np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]),
}


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_round_trip_integer_voxels(name):
    d = DIRECTIONS[name]
    rng = np.random.default_rng(0)
    origin = (-198.1, -195.0, -335.21)
    spacing = (0.7617189884185791, 0.7617189884185791, 2.5)
    for irc in rng.integers(0, 512, size=(200, 3)):
        xyz = irc2xyz(tuple(irc), origin, spacing, d)
        assert isinstance(xyz, XyzTuple)
        back = xyz2irc(xyz, origin, spacing, d)
        assert isinstance(back, IrcTuple)
        assert back == tuple(int(v) for v in irc)


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_world_to_voxel_is_nearest_voxel(name):
    d = DIRECTIONS[name]
    rng = np.random.default_rng(3)
    origin, spacing = np.array([10.0, -20.0, 5.0]), np.array([0.7, 0.8, 1.25])
    xyz = rng.uniform(-100, 100, size=(500, 3))
    irc = xyz2irc_array(xyz, origin, spacing, d)
    # the continuous voxel coordinate differs from the rounded one by at most half a voxel
    cri = (np.linalg.inv(d) @ (xyz - origin).T).T / spacing
    assert np.all(np.abs(cri[:, ::-1] - irc) <= 0.5 + 1e-9)
    # and back to world: within half a voxel diagonal
    back = irc2xyz_array(irc, origin, spacing, d)
    assert np.all(np.linalg.norm(back - xyz, axis=1) <= 0.5 * np.linalg.norm(spacing) + 1e-9)


def test_known_values_identity_and_flip():
    origin, spacing = (-10.0, -20.0, -30.0), (0.5, 0.75, 2.5)
    assert irc2xyz((0, 0, 0), origin, spacing, np.eye(3)) == origin
    # (index, row, col) = (2, 3, 4): x from col, y from row, z from index
    assert irc2xyz((2, 3, 4), origin, spacing, np.eye(3)) == (-8.0, -17.75, -25.0)
    flip = np.diag([-1.0, -1.0, 1.0])
    assert irc2xyz((2, 3, 4), origin, spacing, flip) == (-12.0, -22.25, -25.0)
    assert xyz2irc((-12.0, -22.25, -25.0), origin, spacing, flip) == (2, 3, 4)
    # a 9-value row-major direction is accepted too
    assert xyz2irc((-12.0, -22.25, -25.0), origin, spacing, flip.ravel()) == (2, 3, 4)


def test_non_symmetric_direction_uses_the_matrix_not_its_transpose():
    # 90 degree rotation about z: voxel column axis points along world +y
    d = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    xyz = irc2xyz((0, 0, 1), (0, 0, 0), (1, 1, 1), d)
    assert xyz == (0.0, 1.0, 0.0)
    assert xyz2irc(xyz, (0, 0, 0), (1, 1, 1), d) == (0, 0, 1)


def test_scalar_and_array_agree():
    d = DIRECTIONS["rotation"]
    rng = np.random.default_rng(5)
    xyz = rng.uniform(-300, 300, size=(1000, 3))
    o, s = (1.5, -2.5, 3.5), (0.6, 0.6, 1.0)
    arr = xyz2irc_array(xyz, o, s, d)
    assert arr.dtype == np.int64
    for p, q in zip(xyz, arr):
        assert xyz2irc(tuple(p), o, s, d) == tuple(int(v) for v in q)


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_matches_simpleitk(name):
    """SimpleITK orders its index, origin, spacing and direction x, y, z (index = (col, row,
    slice)); ours are (index, row, col) voxels and x, y, z world points."""
    d = DIRECTIONS[name]
    shape_irc = (7, 11, 13)
    origin, spacing = (12.5, -40.25, 3.0), (0.6, 0.9, 2.5)        # x and y spacing differ
    img = sitk.Image(shape_irc[::-1], sitk.sitkInt16)
    img.SetOrigin(origin)
    img.SetSpacing(spacing)
    img.SetDirection(tuple(float(v) for v in d.ravel()))
    rng = np.random.default_rng(11)
    irc_a = np.array([(0, 0, 0), (6, 10, 12), (1, 2, 3), (5, 0, 12)]
                     + [tuple(int(rng.integers(0, n)) for n in shape_irc) for _ in range(30)])
    want = np.array([img.TransformIndexToPhysicalPoint([int(v) for v in irc[::-1]])
                     for irc in irc_a])
    np.testing.assert_allclose(irc2xyz_array(irc_a, origin, spacing, d), want, atol=1e-9,
                               rtol=0)
    # world points up to 0.3 voxel off the centres: SimpleITK's nearest voxel is ours
    cont = irc_a[:, ::-1] + rng.uniform(-0.3, 0.3, size=irc_a.shape)
    xyz = np.array([img.TransformContinuousIndexToPhysicalPoint([float(v) for v in c])
                    for c in cont])
    sitk_irc = np.array([img.TransformPhysicalPointToIndex([float(v) for v in p])[::-1]
                         for p in xyz])
    np.testing.assert_array_equal(sitk_irc, irc_a)
    np.testing.assert_array_equal(xyz2irc_array(xyz, origin, spacing, d), irc_a)
    for p, irc in zip(xyz, irc_a):
        assert xyz2irc(tuple(p), origin, spacing, d) == tuple(int(v) for v in irc)


def test_bad_direction_shape():
    with pytest.raises(ValueError):
        irc2xyz((0, 0, 0), (0, 0, 0), (1, 1, 1), np.eye(2))
