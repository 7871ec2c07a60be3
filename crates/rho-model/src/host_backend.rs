//! What the host kernels (`cpu_conv`, `cpu_norm`) share: which backends they serve, and moving
//! tensors between those backends and host slices without copying where the backend allows it.
//!
//! A backend is recognised by its `TypeId`, so the kernels attach to flex and ndarray (with and
//! without autodiff) and never to a GPU backend, whatever its name. Other crates' host kernels
//! (the optimiser's fused update in rho-train) use [`read`] and [`update_in_place`].

use std::any::{Any, TypeId};
use std::borrow::Cow;

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Element, Tensor, TensorData, TensorPrimitive};

/// The element types the host kernels compute in (f32 and f64).
pub trait Real:
    Copy
    + Send
    + Sync
    + 'static
    + std::ops::AddAssign
    + std::ops::Add<Output = Self>
    + std::ops::Mul<Output = Self>
    + PartialOrd
    + Element
    + std::fmt::Debug
{
    const ZERO: Self;
    const ONE: Self;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    /// The values of a contiguous flex tensor of this dtype, borrowed.
    #[cfg(feature = "flex")]
    fn flex_slice(t: &burn::backend::flex::FlexTensor) -> Option<&[Self]>;
    /// The values of a contiguous flex tensor of this dtype that owns its buffer, writable.
    #[cfg(feature = "flex")]
    fn flex_slice_mut(t: &mut burn::backend::flex::FlexTensor) -> Option<&mut [Self]>;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[cfg(feature = "flex")]
    fn flex_slice(t: &burn::backend::flex::FlexTensor) -> Option<&[Self]> {
        t.as_slice::<f32>()
    }
    #[cfg(feature = "flex")]
    fn flex_slice_mut(t: &mut burn::backend::flex::FlexTensor) -> Option<&mut [Self]> {
        if t.dtype() != <f32 as Element>::dtype() {
            return None;
        }
        let (start, end) = t.layout().contiguous_offsets()?;
        Some(&mut t.try_storage_mut::<f32>()?[start..end])
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
    #[cfg(feature = "flex")]
    fn flex_slice(t: &burn::backend::flex::FlexTensor) -> Option<&[Self]> {
        t.as_slice::<f64>()
    }
    #[cfg(feature = "flex")]
    fn flex_slice_mut(t: &mut burn::backend::flex::FlexTensor) -> Option<&mut [Self]> {
        if t.dtype() != <f64 as Element>::dtype() {
            return None;
        }
        let (start, end) = t.layout().contiguous_offsets()?;
        Some(&mut t.try_storage_mut::<f64>()?[start..end])
    }
}

/// The element types the kernels take; anything else keeps the backend's own operation.
pub fn is_host_dtype(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64)
}

/// The backends with host kernels, under autodiff and without.
pub(crate) fn host_backends() -> Vec<TypeId> {
    #[allow(unused_mut)]
    let mut ids = Vec::new();
    #[cfg(feature = "flex")]
    ids.extend(ids_of::<burn::backend::Flex>());
    #[cfg(feature = "ndarray")]
    {
        ids.extend(ids_of::<burn::backend::NdArray<f32>>());
        ids.extend(ids_of::<burn::backend::NdArray<f64>>());
    }
    ids
}

/// Whether `B` is one of [`host_backends`].
pub fn is_host_backend<B: Backend>() -> bool {
    host_backends().contains(&TypeId::of::<B>())
}

#[allow(dead_code)]
fn ids_of<C: Backend>() -> [TypeId; 2] {
    [
        TypeId::of::<C>(),
        TypeId::of::<burn_autodiff::Autodiff<C>>(),
    ]
}

/// A tensor's values on the host: borrowed from a contiguous flex tensor, copied otherwise
/// (the backward pass shares its inputs with the graph, so taking them would copy anyway).
/// The caller has checked that the dtype is `T`'s.
pub fn read<IB: Backend, T: Real>(t: &FloatTensor<IB>) -> Cow<'_, [T]> {
    #[cfg(feature = "flex")]
    if let Some(s) = (t as &dyn Any)
        .downcast_ref::<burn::backend::flex::FlexTensor>()
        .and_then(T::flex_slice)
    {
        return Cow::Borrowed(s);
    }
    let data = Tensor::<IB, 1>::from_primitive(TensorPrimitive::Float(t.clone()))
        .into_data()
        .into_vec::<T>();
    match data {
        Ok(v) => Cow::Owned(v),
        Err(e) => unreachable!("host kernel on a checked dtype: {e:?}"),
    }
}

/// Host values as a tensor of the inner backend.
pub(crate) fn write<IB: Backend, T: Real>(
    v: Vec<T>,
    shape: Vec<usize>,
    device: &IB::Device,
) -> FloatTensor<IB> {
    IB::float_from_data(TensorData::new(v, shape), device)
}

/// The primitive of a tensor whose backend was matched by `TypeId` as the one of `P`.
pub(crate) fn prim<B: Backend, const D: usize, P: 'static>(t: Tensor<B, D>) -> P {
    let boxed: Box<dyn Any> = Box::new(t.into_primitive().tensor());
    match boxed.downcast::<P>() {
        Ok(p) => *p,
        Err(_) => unreachable!("the backend's TypeId was compared"),
    }
}

/// The tensor of a primitive whose backend was matched by `TypeId` as `B`.
pub(crate) fn tensor<B: Backend, const D: usize, P: 'static>(p: P) -> Tensor<B, D> {
    let boxed: Box<dyn Any> = Box::new(p);
    match boxed.downcast::<FloatTensor<B>>() {
        Ok(p) => Tensor::from_primitive(TensorPrimitive::Float(*p)),
        Err(_) => unreachable!("the backend's TypeId was compared"),
    }
}

/// Runs `f` on a float tensor's values (dtype `T`) in place where the tensor is a contiguous
/// flex tensor that owns its buffer, on a contiguous copy otherwise, and returns the tensor
/// that holds the result (same shape and device).
pub fn update_in_place<B: Backend, T: Real, const D: usize, R>(
    t: Tensor<B, D>,
    f: impl FnOnce(&mut [T]) -> R,
) -> (Tensor<B, D>, R) {
    let (dims, device) = (t.dims(), t.device());
    #[allow(unused_mut)]
    let mut prim = t.into_primitive().tensor();
    #[cfg(feature = "flex")]
    if let Some(flex) =
        (&mut prim as &mut dyn Any).downcast_mut::<burn::backend::flex::FlexTensor>()
    {
        if let Some(slice) = T::flex_slice_mut(flex) {
            let r = f(slice);
            return (Tensor::from_primitive(TensorPrimitive::Float(prim)), r);
        }
    }
    let mut v = read::<B, T>(&prim).into_owned();
    let r = f(&mut v);
    let out = write::<B, T>(v, dims.to_vec(), &device);
    (Tensor::from_primitive(TensorPrimitive::Float(out)), r)
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn buffer(t: &Tensor<Flex, 1>) -> *const f32 {
        let p = t.clone().into_primitive().tensor();
        f32::flex_slice(&p).map_or(std::ptr::null(), |s| s.as_ptr())
    }

    /// A tensor that owns its buffer is written in place; a shared one is copied first, and
    /// the other owner keeps its values.
    #[test]
    fn updates_in_place_only_what_is_not_shared() {
        let dev = Default::default();
        let t = Tensor::<Flex, 1>::from_floats([1.0, 2.0, 3.0], &dev);
        let before = buffer(&t);
        let (t, sum) = update_in_place::<Flex, f32, 1, _>(t, |v| {
            v.iter_mut().for_each(|x| *x *= 2.0);
            v.iter().sum::<f32>()
        });
        assert_eq!(sum, 12.0);
        assert_eq!(
            buffer(&t),
            before,
            "a unique tensor is updated in its own buffer"
        );
        let kept = t.clone();
        let (t, _) = update_in_place::<Flex, f32, 1, _>(t, |v| v[0] = -1.0);
        assert_eq!(t.into_data().to_vec::<f32>().unwrap(), vec![-1.0, 4.0, 6.0]);
        assert_eq!(
            kept.into_data().to_vec::<f32>().unwrap(),
            vec![2.0, 4.0, 6.0]
        );
        // A non-contiguous view is copied into a contiguous result.
        let m = Tensor::<Flex, 2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &dev).transpose();
        let (m, _) = update_in_place::<Flex, f32, 2, _>(m, |v| v[1] += 10.0);
        assert_eq!(
            m.into_data().to_vec::<f32>().unwrap(),
            vec![1.0, 13.0, 2.0, 4.0]
        );
    }
}
