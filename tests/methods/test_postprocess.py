import numpy as np

from semiseg.evaluation.postprocess import largest_component_per_class


def test_largest_component_per_class_2d_and_3d():
    lab = np.zeros((10, 10), np.int16)
    lab[1:4, 1:4] = 1  # 9 voxels: kept
    lab[7, 7] = 1  # stray voxel: removed
    lab[5:7, 1:3] = 2  # class 2, one component: kept
    out = largest_component_per_class(lab, 3)
    assert out[7, 7] == 0 and (out[1:4, 1:4] == 1).all() and (out[5:7, 1:3] == 2).all()
    assert (lab[7, 7] == 1)  # input untouched
    vol = np.zeros((4, 6, 6), np.int16)
    vol[0, 0, 0] = 1
    vol[2:4, 2:5, 2:5] = 1
    out3 = largest_component_per_class(vol, 2)
    assert out3[0, 0, 0] == 0 and out3.sum() == 18
