// Polyak's heavy ball (1964) in the lecture's notation:
//   v <- -grad f(x) + beta v;   x <- x + lr v.
// in:  T g, F lr, F beta
// out: T p, T v
F vn = beta * (F)v - (F)g;
v = (T)vn;
p = (T)((F)p + lr * vn);
