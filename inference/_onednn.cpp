// The native engine (`inference._onednn`): oneDNN convolutions on channels-last row bands and the
// loops around them, a whole layer per call, with its bands run on native threads and the GIL
// released. `inference/native/` holds the C++ (kernels: the loops; conv: oneDNN primitives;
// passes, layers, runner: the band loop of each layer on native threads; maps: band storage) and
// the typed binding (binding_*: arrays checked, Conv and Map types); this file is the Runner type
// and the module. Builds against oneDNN 2.x (Debian 12's
// libdnnl-dev) and 3.x. Python-facing signatures: inference/_onednn.pyi.
#include <array>
#include <cmath>

#include "native/binding.hpp"

namespace animegan::py {

namespace {

struct RunnerObject {
    PyObject_HEAD
    std::unique_ptr<Runner> runner;
    bool busy;
};

Runner* runner_of(PyObject* self) {
    auto* object = reinterpret_cast<RunnerObject*>(self);
    if (!object->runner) {
        PyErr_SetString(PyExc_ValueError, "the Runner was not initialised");
        return nullptr;
    }
    if (object->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the Runner is running another layer");
        return nullptr;
    }
    return object->runner.get();
}

// Holds the runner for one call (set and cleared with the GIL held).
struct Running {
    RunnerObject* object;
    explicit Running(PyObject* self) : object(reinterpret_cast<RunnerObject*>(self)) { object->busy = true; }
    ~Running() { object->busy = false; }
};

int runner_init(PyObject* self, PyObject* args, PyObject* kwargs) {
    static const char* names[] = {"threads", nullptr};
    int threads = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|i", const_cast<char**>(names), &threads)) return -1;
    if (threads < 1 || threads > 256) {
        PyErr_SetString(PyExc_ValueError, "threads must be between 1 and 256");
        return -1;
    }
    auto* object = reinterpret_cast<RunnerObject*>(self);
    try {
        object->runner = std::make_unique<Runner>(threads);
    } catch (...) {
        raise_current();
        return -1;
    }
    object->busy = false;
    return 0;
}

void runner_dealloc(PyObject* self) {
    reinterpret_cast<RunnerObject*>(self)->runner.reset();
    Py_TYPE(self)->tp_free(self);
}

bool positive(int value, const char* name) {
    if (value >= 1) return true;
    PyErr_Format(PyExc_ValueError, "%s must be at least 1", name);
    return false;
}

// The activation a layer applies to its input (scale and shift of `channels` values, or None).
bool get_act(PyObject* scale_obj, PyObject* shift_obj, int lrelu, float qscale, float qzero, int channels,
             Array& scale, Array& shift, Act& act) {
    if (!get_optional(scale_obj, "scale", 'f', {channels}, scale)) return false;
    if (!get_optional(shift_obj, "shift", 'f', {channels}, shift)) return false;
    if (scale.held != shift.held) {
        PyErr_SetString(PyExc_ValueError, "scale and shift come together");
        return false;
    }
    if (!(qscale > 0.0f) || !std::isfinite(qscale) || !std::isfinite(qzero)) {
        PyErr_SetString(PyExc_ValueError, "qscale must be positive and qzero finite");
        return false;
    }
    act.scale = scale.held ? scale.data<float>() : nullptr;
    act.shift = shift.held ? shift.data<float>() : nullptr;
    act.lrelu = lrelu != 0;
    act.qscale = qscale;
    act.qzero = qzero;
    return true;
}

bool get_image(PyObject* obj, Array& image) {
    if (!get_array(obj, "image", 'B', {-1, -1, 3}, false, image)) return false;
    if (image.dim(0) < 4 || image.dim(1) < 4) {
        PyErr_SetString(PyExc_ValueError, "image: at least 4 x 4 pixels");
        return false;
    }
    return true;
}

PyObject* runner_load_map(PyObject* self, PyObject* args) {
    PyObject* values_obj;
    int rows;
    const char* store_text;
    if (!PyArg_ParseTuple(args, "Ois", &values_obj, &rows, &store_text)) return nullptr;
    Runner* runner = runner_of(self);
    Type store;
    Array values;
    if (runner == nullptr || !parse_type(store_text, &store) || !positive(rows, "rows") ||
        !get_array(values_obj, "values", 'f', {-1, -1, -1}, false, values)) {
        return nullptr;
    }
    std::unique_ptr<Map> out;
    Running running(self);
    if (!unlocked([&] {
            out = load_map(*runner, values.data<float>(), static_cast<int>(values.dim(0)),
                           static_cast<int>(values.dim(1)), static_cast<int>(values.dim(2)), rows, store);
        })) {
        return nullptr;
    }
    return wrap_map(std::move(out));
}

PyObject* runner_head_stats(PyObject* self, PyObject* args) {
    PyObject *image_obj, *first_obj;
    int rows;
    if (!PyArg_ParseTuple(args, "OOi", &image_obj, &first_obj, &rows)) return nullptr;
    Runner* runner = runner_of(self);
    Conv* first = conv_of(first_obj, "first");
    Array image;
    if (runner == nullptr || first == nullptr || !positive(rows, "rows") || !get_image(image_obj, image)) return nullptr;
    std::unique_ptr<Map> out;
    Running running(self);
    if (!unlocked([&] {
            out = head_stats(*runner, image.data<uint8_t>(), static_cast<int>(image.dim(0)),
                             static_cast<int>(image.dim(1)), *first, rows);
        })) {
        return nullptr;
    }
    return wrap_map(std::move(out));
}

PyObject* runner_head(PyObject* self, PyObject* args, PyObject* kwargs) {
    static const char* names[] = {"image", "first", "second", "scale", "shift", "qscale", "qzero", "rows", "store",
                                  nullptr};
    PyObject *image_obj, *first_obj, *second_obj, *scale_obj, *shift_obj;
    float qscale, qzero;
    int rows;
    const char* store_text;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOffis", const_cast<char**>(names), &image_obj, &first_obj,
                                     &second_obj, &scale_obj, &shift_obj, &qscale, &qzero, &rows, &store_text)) {
        return nullptr;
    }
    Runner* runner = runner_of(self);
    Conv* first = conv_of(first_obj, "first");
    Conv* second = conv_of(second_obj, "second");
    Type store;
    Array image, scale, shift;
    Act act;
    if (runner == nullptr || first == nullptr || second == nullptr || !parse_type(store_text, &store) ||
        !positive(rows, "rows") || !get_image(image_obj, image) ||
        !get_act(scale_obj, shift_obj, 1, qscale, qzero, first->oc, scale, shift, act)) {
        return nullptr;
    }
    std::unique_ptr<Map> out;
    Running running(self);
    if (!unlocked([&] {
            out = head(*runner, image.data<uint8_t>(), static_cast<int>(image.dim(0)), static_cast<int>(image.dim(1)),
                       *first, *second, act, rows, store);
        })) {
        return nullptr;
    }
    return wrap_map(std::move(out));
}

PyObject* runner_conv(PyObject* self, PyObject* args, PyObject* kwargs) {
    static const char* names[] = {"src", "conv", "scale", "shift", "lrelu", "qscale", "qzero", "pads", "rows",
                                  "store", "keep_source", nullptr};
    PyObject *src_obj, *conv_obj, *scale_obj, *shift_obj;
    int lrelu, rows, keep_source;
    float qscale, qzero;
    std::array<int, 4> p{};
    const char* store_text;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOpff(iiii)isp", const_cast<char**>(names), &src_obj, &conv_obj,
                                     &scale_obj, &shift_obj, &lrelu, &qscale, &qzero, &p[0], &p[1], &p[2], &p[3],
                                     &rows, &store_text, &keep_source)) {
        return nullptr;
    }
    Runner* runner = runner_of(self);
    Map* src = map_of(src_obj, "src");
    Conv* conv = conv_of(conv_obj, "conv");
    Type store;
    Array scale, shift;
    Act act;
    if (runner == nullptr || src == nullptr || conv == nullptr || !parse_type(store_text, &store) ||
        !positive(rows, "rows") || !get_act(scale_obj, shift_obj, lrelu, qscale, qzero, src->c, scale, shift, act)) {
        return nullptr;
    }
    if (*std::min_element(p.begin(), p.end()) < 0) {
        PyErr_SetString(PyExc_ValueError, "pads must not be negative");
        return nullptr;
    }
    InUse use;
    if (!use.add(src)) return nullptr;
    std::unique_ptr<Map> out;
    Running running(self);
    if (!unlocked([&] {
            out = conv_layer(*runner, *src, *conv, act, Pads{p[0], p[1], p[2], p[3]}, rows, store, keep_source != 0);
        })) {
        return nullptr;
    }
    return wrap_map(std::move(out));
}

bool get_table(PyObject* first_obj, PyObject* second_obj, PyObject* weight_obj, const char* name, Array& first,
               Array& second, Array& weight, Table& table) {
    std::string base(name);
    if (!get_array(first_obj, (base + "_first").c_str(), 'i', {-1}, false, first) ||
        !get_array(second_obj, (base + "_second").c_str(), 'i', {first.dim(0)}, false, second) ||
        !get_array(weight_obj, (base + "_weight").c_str(), 'f', {first.dim(0)}, false, weight)) {
        return false;
    }
    table = Table{first.data<int32_t>(), second.data<int32_t>(), weight.data<float>(), static_cast<int>(first.dim(0))};
    return true;
}

PyObject* runner_upsample_conv(PyObject* self, PyObject* args, PyObject* kwargs) {
    static const char* names[] = {"src", "conv", "scale", "shift", "qscale", "qzero", "row_first", "row_second",
                                  "row_weight", "col_first", "col_second", "col_weight", "rows", "store", nullptr};
    PyObject *src_obj, *conv_obj, *scale_obj, *shift_obj, *rf, *rs, *rw, *cf, *cs, *cw;
    float qscale, qzero;
    int rows;
    const char* store_text;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOffOOOOOOis", const_cast<char**>(names), &src_obj, &conv_obj,
                                     &scale_obj, &shift_obj, &qscale, &qzero, &rf, &rs, &rw, &cf, &cs, &cw, &rows,
                                     &store_text)) {
        return nullptr;
    }
    Runner* runner = runner_of(self);
    Map* src = map_of(src_obj, "src");
    Conv* conv = conv_of(conv_obj, "conv");
    Type store;
    Array scale, shift, a1, a2, a3, b1, b2, b3;
    Act act;
    Table row_table{}, col_table{};
    if (runner == nullptr || src == nullptr || conv == nullptr || !parse_type(store_text, &store) ||
        !positive(rows, "rows") || !get_act(scale_obj, shift_obj, 1, qscale, qzero, src->c, scale, shift, act) ||
        !get_table(rf, rs, rw, "row", a1, a2, a3, row_table) || !get_table(cf, cs, cw, "col", b1, b2, b3, col_table)) {
        return nullptr;
    }
    InUse use;
    if (!use.add(src)) return nullptr;
    std::unique_ptr<Map> out;
    Running running(self);
    if (!unlocked([&] { out = upsample_conv(*runner, *src, *conv, act, row_table, col_table, rows, store); })) {
        return nullptr;
    }
    return wrap_map(std::move(out));
}

PyObject* runner_residual(PyObject* self, PyObject* args) {
    PyObject *project_obj, *input_obj, *scale_obj, *shift_obj;
    if (!PyArg_ParseTuple(args, "OOOO", &project_obj, &input_obj, &scale_obj, &shift_obj)) return nullptr;
    Runner* runner = runner_of(self);
    Map* project = map_of(project_obj, "project");
    Map* block_input = input_obj == Py_None ? nullptr : map_of(input_obj, "block_input");
    if (runner == nullptr || project == nullptr || (input_obj != Py_None && block_input == nullptr)) return nullptr;
    if (block_input == project) {
        PyErr_SetString(PyExc_ValueError, "block_input: must be another map than project");
        return nullptr;
    }
    Array scale, shift;
    if (!get_array(scale_obj, "scale", 'f', {project->c}, false, scale) ||
        !get_array(shift_obj, "shift", 'f', {project->c}, false, shift)) {
        return nullptr;
    }
    InUse use;
    if (!use.add(project) || !use.add(block_input)) return nullptr;
    Running running(self);
    if (!unlocked([&] { residual(*runner, *project, block_input, scale.data<float>(), shift.data<float>()); })) {
        return nullptr;
    }
    Py_RETURN_NONE;
}

PyObject* runner_output(PyObject* self, PyObject* args, PyObject* kwargs) {
    static const char* names[] = {"src", "conv", "scale", "shift", "qscale", "qzero", "rgb", nullptr};
    PyObject *src_obj, *conv_obj, *scale_obj, *shift_obj, *rgb_obj;
    float qscale, qzero;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOffO", const_cast<char**>(names), &src_obj, &conv_obj,
                                     &scale_obj, &shift_obj, &qscale, &qzero, &rgb_obj)) {
        return nullptr;
    }
    Runner* runner = runner_of(self);
    Map* src = map_of(src_obj, "src");
    Conv* conv = conv_of(conv_obj, "conv");
    Array scale, shift, rgb;
    Act act;
    if (runner == nullptr || src == nullptr || conv == nullptr ||
        !get_act(scale_obj, shift_obj, 1, qscale, qzero, src->c, scale, shift, act) ||
        !get_array(rgb_obj, "rgb", 'B', {src->h, src->w, 3}, true, rgb)) {
        return nullptr;
    }
    InUse use;
    if (!use.add(src)) return nullptr;
    Running running(self);
    if (!unlocked([&] { output(*runner, *src, *conv, act, rgb.data<uint8_t>()); })) return nullptr;
    Py_RETURN_NONE;
}

PyObject* runner_set_unit(PyObject* self, PyObject* args) {
    Py_ssize_t bytes;
    if (!PyArg_ParseTuple(args, "n", &bytes)) return nullptr;
    Runner* runner = runner_of(self);
    if (runner == nullptr) return nullptr;
    if (bytes < 0) {
        PyErr_SetString(PyExc_ValueError, "unit must not be negative");
        return nullptr;
    }
    runner->pool->set_unit(static_cast<size_t>(bytes));
    Py_RETURN_NONE;
}

PyObject* runner_clear(PyObject* self, PyObject*) {
    Runner* runner = runner_of(self);
    if (runner == nullptr) return nullptr;
    runner->clear();
    Py_RETURN_NONE;
}

PyObject* runner_threads(PyObject* self, void*) {
    auto* object = reinterpret_cast<RunnerObject*>(self);
    return PyLong_FromLong(object->runner ? object->runner->threads() : 0);
}

template <typename F>
PyCFunction keywords(F f) {
    return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(f));
}

PyMethodDef runner_methods[] = {
    {"load_map", runner_load_map, METH_VARARGS, "load_map(values, rows, store) -> Map from a (h, w, c) float32 array."},
    {"head_stats", runner_head_stats, METH_VARARGS, "head_stats(image, first, rows) -> the first conv's statistics."},
    {"head", keywords(runner_head), METH_VARARGS | METH_KEYWORDS, "The first conv, normalised, into the second."},
    {"conv", keywords(runner_conv), METH_VARARGS | METH_KEYWORDS, "One conv layer over a map."},
    {"upsample_conv", keywords(runner_upsample_conv), METH_VARARGS | METH_KEYWORDS,
     "A bilinear upsample folded into the 3x3 conv after it."},
    {"residual", runner_residual, METH_VARARGS, "residual(project, block_input, scale, shift): in place."},
    {"output", keywords(runner_output), METH_VARARGS | METH_KEYWORDS, "The last conv, tanh and 8 bits into rgb."},
    {"set_unit", runner_set_unit, METH_VARARGS, "set_unit(bytes): the capacity of every band buffer."},
    {"clear", runner_clear, METH_NOARGS, "Frees the threads' scratch and the pool's free buffers."},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef runner_getset[] = {{"threads", runner_threads, nullptr, nullptr, nullptr},
                               {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyTypeObject RunnerType = [] {
    PyTypeObject t{PyVarObject_HEAD_INIT(nullptr, 0)};
    t.tp_name = "inference._onednn.Runner";
    t.tp_basicsize = sizeof(RunnerObject);
    t.tp_flags = Py_TPFLAGS_DEFAULT;
    t.tp_doc = "Runner(threads=1): runs layers band by band on native threads.";
    t.tp_new = PyType_GenericNew;
    t.tp_init = runner_init;
    t.tp_dealloc = runner_dealloc;
    t.tp_methods = runner_methods;
    t.tp_getset = runner_getset;
    return t;
}();

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_onednn", "The native engine; see inference.runtime_onednn.", -1,
                      nullptr, nullptr, nullptr, nullptr, nullptr};

}  // namespace

}  // namespace animegan::py

PyMODINIT_FUNC PyInit__onednn(void) {
    using namespace animegan::py;
    for (PyTypeObject* type : {&ConvType, &MapType, &RunnerType}) {
        if (PyType_Ready(type) < 0) return nullptr;
    }
    PyObject* m = PyModule_Create(&module);
    if (m == nullptr) return nullptr;
    const std::pair<const char*, PyTypeObject*> types[] = {{"Conv", &ConvType}, {"Map", &MapType}, {"Runner", &RunnerType}};
    for (const auto& [name, type] : types) {
        Py_INCREF(type);
        if (PyModule_AddObject(m, name, reinterpret_cast<PyObject*>(type)) < 0) {
            Py_DECREF(type);
            Py_DECREF(m);
            return nullptr;
        }
    }
    PyModule_AddIntConstant(m, "DNNL_VERSION_MAJOR", DNNL_VERSION_MAJOR);
    return m;
}
