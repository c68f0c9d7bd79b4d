mod pb;
fn main(){}
