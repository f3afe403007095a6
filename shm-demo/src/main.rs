fn main() {
    println!("shm-demo: not yet implemented");
}
