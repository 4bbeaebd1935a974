// The Conv and Map types of `inference._onednn`.
#include <string>

#include <omp.h>

#include "binding.hpp"
#include "kernels.hpp"

namespace animegan::py {

// ---- Conv --------------------------------------------------------------------------------------------

namespace {

int conv_init(PyObject* self, PyObject* args, PyObject* kwargs) {
    static const char* names[] = {"weights", "bias", "stride", "groups", "mode", "f32_out", nullptr};
    PyObject *weights_obj, *bias_obj = Py_None;
    int stride = 1, groups = 1, f32_out = 0;
    const char* mode_text = "f32";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOii|sp", const_cast<char**>(names), &weights_obj, &bias_obj,
                                     &stride, &groups, &mode_text, &f32_out)) {
        return -1;
    }
    std::string mode_name(mode_text);
    Mode mode;
    if (mode_name == "f32") mode = Mode::F32;
    else if (mode_name == "bf16") mode = Mode::BF16;
    else if (mode_name == "int8") mode = Mode::INT8;
    else {
        PyErr_Format(PyExc_ValueError, "unknown conv mode '%s': use f32, bf16 or int8", mode_text);
        return -1;
    }
    Array weights, bias;
    if (!get_array(weights_obj, "weights", 'f', {-1, -1, -1, -1}, false, weights)) return -1;
    auto oc = weights.dim(0), per_group = weights.dim(1), k = weights.dim(2);
    if (weights.dim(3) != k || oc < 1 || per_group < 1 || k < 1 || groups < 1 || stride < 1) {
        PyErr_SetString(PyExc_ValueError, "weights: expected (out, in / groups, k, k) with positive sizes");
        return -1;
    }
    if (oc % groups != 0) {
        PyErr_SetString(PyExc_ValueError, "weights: the output channels do not divide into the groups");
        return -1;
    }
    if (!get_optional(bias_obj, "bias", 'f', {oc}, bias)) return -1;
    auto* object = reinterpret_cast<ConvObject*>(self);
    try {
        object->conv = std::make_unique<Conv>(mode, static_cast<int>(per_group * groups), static_cast<int>(oc),
                                              static_cast<int>(k), stride, groups, weights.data<float>(),
                                              bias.held ? bias.data<float>() : nullptr, f32_out != 0);
    } catch (...) {
        raise_current();
        return -1;
    }
    return 0;
}

void conv_dealloc(PyObject* self) {
    reinterpret_cast<ConvObject*>(self)->conv.reset();
    Py_TYPE(self)->tp_free(self);
}

char format_of(Type t) { return t == Type::F32 ? 'f' : t == Type::BF16 ? 'H' : t == Type::U8 ? 'B' : 'i'; }

// run(src, dst, qscale=1.0, qzero=0.0): one padded band (h, w, in) into dst (out rows, out cols,
// out); an INT8 conv reads u8 (v = (q - qzero) * qscale) and writes its values as float32.
PyObject* conv_run(PyObject* self, PyObject* args, PyObject* kwargs) {
    static const char* names[] = {"src", "dst", "qscale", "qzero", nullptr};
    PyObject *src_obj, *dst_obj;
    float qscale = 1.0f, qzero = 0.0f;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|ff", const_cast<char**>(names), &src_obj, &dst_obj, &qscale,
                                     &qzero)) {
        return nullptr;
    }
    Conv* initialised = conv_of(self, "self");
    if (initialised == nullptr) return nullptr;
    Conv& conv = *initialised;
    Array src, dst;
    if (!get_array(src_obj, "src", format_of(conv.in_type), {-1, -1, conv.ic}, false, src)) return nullptr;
    auto h = static_cast<int>(src.dim(0)), w = static_cast<int>(src.dim(1));
    if (h < conv.k || w < conv.k) {
        PyErr_SetString(PyExc_ValueError, "src: smaller than the kernel");
        return nullptr;
    }
    Type out = conv.mode == Mode::INT8 ? Type::F32 : conv.out_type;
    if (!get_array(dst_obj, "dst", format_of(out), {conv.out_rows(h), conv.out_cols(w), conv.oc}, true, dst)) {
        return nullptr;
    }
    if (conv.mode == Mode::INT8 && !(qscale > 0.0f)) {
        PyErr_SetString(PyExc_ValueError, "qscale must be positive");
        return nullptr;
    }
    bool ok = unlocked([&] {
        omp_set_num_threads(1);
        Scratch scratch;
        if (conv.mode != Mode::INT8) {
            conv.run(src.data<void>(), h, w, dst.data<void>(), scratch);
            return;
        }
        long pixels = static_cast<long>(dst.dim(0)) * dst.dim(1);
        std::vector<int32_t> acc(static_cast<size_t>(pixels) * conv.oc);
        conv.run(src.data<void>(), h, w, acc.data(), scratch);
        std::vector<float> a(static_cast<size_t>(conv.oc)), b(static_cast<size_t>(conv.oc));
        conv.dequant(qscale, qzero, a.data(), b.data());
        transform(Type::S32, acc.data(), Type::F32, dst.data<void>(), pixels, conv.oc, a.data(), b.data(), false,
                  0.0f);
    });
    if (!ok) return nullptr;
    Py_RETURN_NONE;
}

PyObject* conv_weight_scales(PyObject* self, PyObject*) {
    Conv* conv = conv_of(self, "self");
    if (conv == nullptr) return nullptr;
    const auto& scales = conv->weight_scales();
    PyObject* list = PyList_New(static_cast<Py_ssize_t>(scales.size()));
    if (list == nullptr) return nullptr;
    for (size_t i = 0; i < scales.size(); ++i) {
        PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), PyFloat_FromDouble(scales[i]));
    }
    return list;
}

PyObject* conv_trim(PyObject* self, PyObject*) {
    Conv* conv = conv_of(self, "self");
    if (conv == nullptr) return nullptr;
    conv->trim();
    Py_RETURN_NONE;
}

PyObject* conv_get(PyObject* self, void* which) {
    Conv* initialised = conv_of(self, "self");
    if (initialised == nullptr) return nullptr;
    Conv& conv = *initialised;
    switch (reinterpret_cast<intptr_t>(which)) {
        case 0: return PyLong_FromLong(conv.ic);
        case 1: return PyLong_FromLong(conv.oc);
        case 2: return PyLong_FromLong(conv.k);
        case 3: return PyLong_FromLong(conv.stride);
        case 4: return PyLong_FromLong(conv.groups);
        case 5: return PyUnicode_FromString(conv.mode == Mode::F32 ? "f32" : conv.mode == Mode::BF16 ? "bf16" : "int8");
    }
    Py_RETURN_NONE;
}

PyMethodDef conv_methods[] = {
    {"run", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(conv_run)), METH_VARARGS | METH_KEYWORDS,
     "run(src, dst, qscale=1.0, qzero=0.0): one padded band through the conv."},
    {"weight_scales", conv_weight_scales, METH_NOARGS, "INT8: each output channel's weight scale."},
    {"trim", conv_trim, METH_NOARGS, "Drops the cached primitives until the next run."},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef conv_getset[] = {
    {"in_ch", conv_get, nullptr, nullptr, reinterpret_cast<void*>(0)},
    {"out_ch", conv_get, nullptr, nullptr, reinterpret_cast<void*>(1)},
    {"kernel", conv_get, nullptr, nullptr, reinterpret_cast<void*>(2)},
    {"stride", conv_get, nullptr, nullptr, reinterpret_cast<void*>(3)},
    {"groups", conv_get, nullptr, nullptr, reinterpret_cast<void*>(4)},
    {"mode", conv_get, nullptr, nullptr, reinterpret_cast<void*>(5)},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

// ---- Map ---------------------------------------------------------------------------------------------

void map_dealloc(PyObject* self) {
    reinterpret_cast<MapObject*>(self)->map.reset();
    Py_TYPE(self)->tp_free(self);
}

// totals(sums, sumsqs, mins, maxs) -> values per channel: whole-map statistics per channel.
PyObject* map_totals(PyObject* self, PyObject* args) {
    PyObject *s_obj, *q_obj, *lo_obj, *hi_obj;
    if (!PyArg_ParseTuple(args, "OOOO", &s_obj, &q_obj, &lo_obj, &hi_obj)) return nullptr;
    Map* map = map_of(self, "map", false);
    if (map == nullptr) return nullptr;
    Array s, q, lo, hi;
    if (!get_array(s_obj, "sums", 'd', {map->c}, true, s) || !get_array(q_obj, "sumsqs", 'd', {map->c}, true, q) ||
        !get_array(lo_obj, "mins", 'f', {map->c}, true, lo) || !get_array(hi_obj, "maxs", 'f', {map->c}, true, hi)) {
        return nullptr;
    }
    long count = map_totals(*map, s.data<double>(), q.data<double>(), lo.data<float>(), hi.data<float>());
    return PyLong_FromLong(count);
}

// read(out): the map's values as float32 (height, width, channels).
PyObject* map_read(PyObject* self, PyObject* args) {
    PyObject* out_obj;
    if (!PyArg_ParseTuple(args, "O", &out_obj)) return nullptr;
    Map* map = map_of(self, "map");
    if (map == nullptr) return nullptr;
    Array out;
    if (!get_array(out_obj, "out", 'f', {map->h, map->w, map->c}, true, out)) return nullptr;
    InUse use;
    if (!use.add(map)) return nullptr;
    if (!unlocked([&] { read_map(*map, out.data<float>()); })) return nullptr;
    Py_RETURN_NONE;
}

PyObject* map_release(PyObject* self, PyObject*) {
    Map* map = reinterpret_cast<MapObject*>(self)->map.get();
    if (map != nullptr && map->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the map is in use by another native call");
        return nullptr;
    }
    if (map != nullptr) map->release_before(map->h + map->rows);
    Py_RETURN_NONE;
}

PyObject* map_get(PyObject* self, void* which) {
    Map& map = *reinterpret_cast<MapObject*>(self)->map;
    switch (reinterpret_cast<intptr_t>(which)) {
        case 0: return PyLong_FromLong(map.c);
        case 1: return PyLong_FromLong(map.h);
        case 2: return PyLong_FromLong(map.w);
        case 3: return PyLong_FromLong(map.rows);
        case 4: return PyUnicode_FromString(type_name(map.store));
    }
    Py_RETURN_NONE;
}

PyMethodDef map_methods[] = {
    {"totals", map_totals, METH_VARARGS, "totals(sums, sumsqs, mins, maxs) -> values per channel."},
    {"read", map_read, METH_VARARGS, "read(out): the values as float32 (height, width, channels)."},
    {"release", map_release, METH_NOARGS, "Gives every band back to the runner's pool."},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef map_getset[] = {
    {"channels", map_get, nullptr, nullptr, reinterpret_cast<void*>(0)},
    {"height", map_get, nullptr, nullptr, reinterpret_cast<void*>(1)},
    {"width", map_get, nullptr, nullptr, reinterpret_cast<void*>(2)},
    {"rows", map_get, nullptr, nullptr, reinterpret_cast<void*>(3)},
    {"store", map_get, nullptr, nullptr, reinterpret_cast<void*>(4)},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

}  // namespace

PyTypeObject ConvType = [] {
    PyTypeObject t{PyVarObject_HEAD_INIT(nullptr, 0)};
    t.tp_name = "inference._onednn.Conv";
    t.tp_basicsize = sizeof(ConvObject);
    t.tp_flags = Py_TPFLAGS_DEFAULT;
    t.tp_doc = "Conv(weights, bias, stride, groups, mode='f32', f32_out=False): a conv layer on oneDNN.";
    t.tp_new = PyType_GenericNew;
    t.tp_init = conv_init;
    t.tp_dealloc = conv_dealloc;
    t.tp_methods = conv_methods;
    t.tp_getset = conv_getset;
    return t;
}();

PyTypeObject MapType = [] {
    PyTypeObject t{PyVarObject_HEAD_INIT(nullptr, 0)};
    t.tp_name = "inference._onednn.Map";
    t.tp_basicsize = sizeof(MapObject);
    t.tp_flags = Py_TPFLAGS_DEFAULT;
    t.tp_doc = "A feature map as row bands, made by a Runner.";
    t.tp_dealloc = map_dealloc;
    t.tp_methods = map_methods;
    t.tp_getset = map_getset;
    return t;
}();

PyObject* wrap_map(std::unique_ptr<Map> map) {
    auto* object = PyObject_New(MapObject, &MapType);
    if (object == nullptr) return nullptr;
    new (&object->map) std::unique_ptr<Map>(std::move(map));
    return reinterpret_cast<PyObject*>(object);
}

Map* map_of(PyObject* obj, const char* name, bool need_bands) {
    if (!PyObject_TypeCheck(obj, &MapType)) {
        PyErr_Format(PyExc_TypeError, "%s: expected a Map", name);
        return nullptr;
    }
    Map* map = reinterpret_cast<MapObject*>(obj)->map.get();
    bool any = std::any_of(map->bands.begin(), map->bands.end(), [](const Buffer& b) { return b.data != nullptr; });
    if (need_bands && !any) {
        PyErr_Format(PyExc_ValueError, "%s: the map holds no bands (statistics only, or released)", name);
        return nullptr;
    }
    return map;
}

Conv* conv_of(PyObject* obj, const char* name) {
    if (!PyObject_TypeCheck(obj, &ConvType)) {
        PyErr_Format(PyExc_TypeError, "%s: expected a Conv", name);
        return nullptr;
    }
    Conv* conv = reinterpret_cast<ConvObject*>(obj)->conv.get();
    if (conv == nullptr) {
        PyErr_Format(PyExc_ValueError, "%s: the Conv was not initialised", name);
        return nullptr;
    }
    return conv;
}

}  // namespace animegan::py
