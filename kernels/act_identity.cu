// Identity activation: a = z, da = 1.
// "one" is the constant 1 in the compute type F; it is a parameter because CuPy
// types F from the arguments and an activation has no other scalar.
// in:  T z, F one
// out: T a, T da if DERIV
a = z;
#if DERIV
da = (T)one;
#endif
