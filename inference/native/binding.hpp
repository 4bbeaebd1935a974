// The Python face of the native engine (module `inference._onednn`): typed objects over the C++
// classes, every array argument checked here (dtype, shape, C order) and every C++ error raised
// as a Python exception. Native work runs with the GIL released.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <exception>
#include <memory>
#include <vector>

#include "conv.hpp"
#include "layers.hpp"

namespace animegan::py {

// A C-contiguous buffer of one element type, released with the object.
struct Array {
    Py_buffer view{};
    bool held = false;
    Array() = default;
    Array(const Array&) = delete;
    Array& operator=(const Array&) = delete;
    ~Array() {
        if (held) PyBuffer_Release(&view);
    }
    template <typename T>
    T* data() const {
        return static_cast<T*>(view.buf);
    }
    Py_ssize_t dim(int i) const { return view.shape[i]; }
};

// Gets `obj` as a C-contiguous array of element `fmt` ('f' float32, 'd' float64, 'B' uint8, 'H'
// uint16, 'i' int32) and `shape` (-1: any size), writable if asked; false with ValueError set.
bool get_array(PyObject* obj, const char* name, char fmt, const std::vector<Py_ssize_t>& shape, bool writable,
               Array& out);
// The same for an optional argument (None: not held, true).
bool get_optional(PyObject* obj, const char* name, char fmt, const std::vector<Py_ssize_t>& shape, Array& out);

// Sets the Python exception for the C++ exception being handled (ArgError: ValueError); false.
bool raise_current();

bool parse_type(const char* text, Type* out);  // "f32", "bf16", "u8"

struct ConvObject {
    PyObject_HEAD
    std::unique_ptr<Conv> conv;
};

struct MapObject {
    PyObject_HEAD
    std::unique_ptr<Map> map;
};

extern PyTypeObject ConvType;
extern PyTypeObject MapType;

PyObject* wrap_map(std::unique_ptr<Map> map);
// The map behind a Map argument, not released and not in use by another call; null with an error set.
Map* map_of(PyObject* obj, const char* name, bool need_bands = true);
Conv* conv_of(PyObject* obj, const char* name);

// Runs `fn` with the GIL released, turning C++ exceptions into Python ones; false when one was raised.
template <typename F>
bool unlocked(F&& fn) {
    std::exception_ptr error;
    Py_BEGIN_ALLOW_THREADS
    try {
        fn();
    } catch (...) {
        error = std::current_exception();
    }
    Py_END_ALLOW_THREADS
    if (!error) return true;
    try {
        std::rethrow_exception(error);
    } catch (...) {
        return raise_current();
    }
}

}  // namespace animegan::py

namespace animegan::py {

// Marks maps in use for the length of one native call (checked and set with the GIL held), so a
// map is never read by one call while another releases or rewrites it.
class InUse {
   public:
    InUse() = default;
    InUse(const InUse&) = delete;
    InUse& operator=(const InUse&) = delete;
    ~InUse() {
        for (Map* m : maps_) m->busy = false;
    }
    bool add(Map* map) {
        if (map == nullptr) return true;
        if (map->busy) {
            PyErr_SetString(PyExc_RuntimeError, "the map is in use by another native call");
            return false;
        }
        map->busy = true;
        maps_.push_back(map);
        return true;
    }

   private:
    std::vector<Map*> maps_;
};

}  // namespace animegan::py
