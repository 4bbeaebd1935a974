#include <string>

#include "binding.hpp"

namespace animegan::py {

namespace {

const char* dtype_name(char fmt) {
    switch (fmt) {
        case 'f': return "float32";
        case 'd': return "float64";
        case 'B': return "uint8";
        case 'H': return "uint16";
        case 'i': return "int32";
    }
    return "?";
}

char element_of(const Py_buffer& view) {
    const char* f = view.format == nullptr ? "B" : view.format;
    if (*f == '@' || *f == '=' || *f == '<') ++f;  // native byte order (x86-64: little-endian)
    if (f[0] == '\0' || f[1] != '\0') return '?';
    char c = f[0];
    if (c == 'l' && sizeof(long) == 4) c = 'i';
    if (c == 'I' || c == 'L' || c == 'l' || c == 'q') return '?';
    if (c == 'i' && view.itemsize != 4) return '?';
    return c;
}

std::string shape_text(const std::vector<Py_ssize_t>& shape) {
    std::string text = "(";
    for (size_t i = 0; i < shape.size(); ++i) {
        text += shape[i] < 0 ? std::string("any") : std::to_string(shape[i]);
        if (i + 1 < shape.size()) text += ", ";
        else if (shape.size() == 1) text += ",";
    }
    return text + ")";
}

std::string shape_text(const Py_buffer& view) {
    std::vector<Py_ssize_t> shape(view.shape, view.shape + view.ndim);
    return shape_text(shape);
}

}  // namespace

bool get_array(PyObject* obj, const char* name, char fmt, const std::vector<Py_ssize_t>& shape, bool writable,
               Array& out) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &out.view, flags) != 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s: expected a C-contiguous%s %s array", name, writable ? " writable" : "",
                     dtype_name(fmt));
        return false;
    }
    out.held = true;
    char element = element_of(out.view);
    if (element != fmt) {
        PyErr_Format(PyExc_ValueError, "%s: expected %s values, got format '%s'", name, dtype_name(fmt),
                     out.view.format ? out.view.format : "B");
        return false;
    }
    bool same = out.view.ndim == static_cast<int>(shape.size());
    for (size_t i = 0; same && i < shape.size(); ++i) same = shape[i] < 0 || out.view.shape[i] == shape[i];
    if (!same) {
        PyErr_Format(PyExc_ValueError, "%s: expected shape %s, got %s", name, shape_text(shape).c_str(),
                     shape_text(out.view).c_str());
        return false;
    }
    return true;
}

bool get_optional(PyObject* obj, const char* name, char fmt, const std::vector<Py_ssize_t>& shape, Array& out) {
    return obj == nullptr || obj == Py_None || get_array(obj, name, fmt, shape, false, out);
}

bool raise_current() {
    try {
        throw;
    } catch (const ArgError& e) {
        PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (...) {
        PyErr_SetString(PyExc_RuntimeError, "unknown native error");
    }
    return false;
}

bool parse_type(const char* text, Type* out) {
    std::string name(text);
    if (name == "f32") *out = Type::F32;
    else if (name == "bf16") *out = Type::BF16;
    else if (name == "u8") *out = Type::U8;
    else {
        PyErr_Format(PyExc_ValueError, "unknown storage '%s': use f32, bf16 or u8", text);
        return false;
    }
    return true;
}

}  // namespace animegan::py
